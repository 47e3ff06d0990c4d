"""The training loop: data → steps → step checkpoints (exact --resume) → final model + metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..device import resolve_device
from .config import ConfigError, TrainConfig
from .data import PairDataset, StepBatchSampler, collate, load_pairs
from .datasets import split_for
from .distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_module,
    init_distributed,
    local_device,
    sum_gradients,
)
from .evaluate import evaluate
from .lock import freeze_frozen_modules, lock_tower
from .logs import MetricsLog
from .loss import BatchMeta, global_value
from .modeling import TrainModel, build_model
from .optim import build_optimizer, build_scheduler
from .state import find_latest_state, load_state, save_state
from .step import StepInputs, forward_backward

log = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
SUMMARY_FILE = "train_summary.json"


@dataclass
class TrainResult:
    model_spec: str  # what load_encoder() takes to load the final model
    steps: int
    final_loss: float
    metrics: dict[str, Any] = field(default_factory=dict)  # last --val evaluation
    skipped: dict[str, int] = field(default_factory=dict)


def _precision(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.precision == "fp32":
        return None  # CPU: fp32 (bf16 autocast is slower than fp32 on most CPUs)
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _train_transform(tm: TrainModel, augment: bool):
    from ..preprocess import build_transform

    pre = tm.preprocess
    if not augment:
        return build_transform(pre)  # exactly the eval/index/serve transform
    from torchvision import transforms as T

    from ..preprocess import _INTERPOLATION

    return T.Compose(
        [
            T.RandomResizedCrop(
                pre.size, scale=(0.8, 1.0), interpolation=_INTERPOLATION[pre.interpolation]
            ),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


class LossParams(nn.Module):
    """Loss-side parameters that are not part of the saved encoder (SigLIP's bias)."""

    def __init__(self, siglip: bool) -> None:
        super().__init__()
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if siglip else None


def train(cfg: TrainConfig, resume: bool | str = False) -> TrainResult:
    """Run (or continue, with resume=True or a state file) a training job described by cfg."""
    cfg.validate()
    replacing = refuse_to_overwrite(Path(cfg.out), resume, cfg.overwrite)
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if replacing and info.is_main:  # the old run's step states must not be resumed into this one
        shutil.rmtree(Path(cfg.out) / "train_state", ignore_errors=True)
    device = local_device(device)
    result = _train(cfg, resume, device, info)
    barrier(info)  # rank 0 saves and evaluates last; everyone leaves together
    return result


@dataclass
class _Run:
    """What one training run holds while it steps (built by _setup, in a fixed order: the
    RNG stream of an exact --resume depends on it)."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    out: Path
    tm: TrainModel
    module: nn.Module
    encoder: Any  # the model.Encoder sharing the module: tokenizer + eval transform
    loss_params: LossParams
    bias: torch.Tensor | None
    data: Any  # PairData
    val: Any  # PairData | None
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler | None
    autocast: Any
    start: int = 0
    params: list[nn.Parameter] = field(default_factory=list)


def _train(cfg: TrainConfig, resume: bool | str, device: torch.device, info: DistInfo):
    if cfg.batch_size % (info.world * cfg.accum_steps):
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by ranks × accum_steps "
            f"({info.world} × {cfg.accum_steps})"
        )
    run = _setup(cfg, _state_path(cfg, resume), device, info)
    cfg = run.cfg  # steps fixed from the data size (--epochs)
    metrics_log = MetricsLog(run.out, run.start, enabled=info.is_main, tensorboard=cfg.tensorboard)
    bar = _progress(cfg, run.start, info)
    bad_rows, loss_value, last_eval = 0, math.nan, {}
    t_last, samples_since = time.perf_counter(), 0
    # seconds of training so far (continued across --resume), evaluation and checkpoints left out
    clock = _TrainClock(*metrics_log.resumed_clock)
    step = run.start
    for batch in _loader(run):
        bad_rows += int((~batch["valid"]).sum())
        loss_value = _optimizer_step(run, batch)
        step += 1
        samples_since += cfg.batch_size
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            rate = samples_since / max(now - t_last, 1e-9)
            t_last, samples_since = now, 0
            row = _row(step, cfg, run.data, run.opt, run.tm, loss_value, rate, bad_rows)
            metrics_log.write({**row, **clock.stamp()})
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}", sps=f"{rate:.1f}", lr=f"{row['lr']:.2e}")
        if bar is not None:
            bar.update(1)
        with clock.paused():
            if _due(cfg.eval_every, step, cfg.steps) and run.val is not None:
                at = clock.stamp()
                last_eval = _eval(run.encoder, run.val, cfg, info, metrics_log, step, at)
            if _due(cfg.save_every, step, cfg.steps):
                _save(run, step)
    if bar is not None:
        bar.close()
    if step != cfg.steps:
        raise RuntimeError(f"data ran out at step {step} of {cfg.steps}")
    return _finish(run, step, loss_value, last_eval, bad_rows, metrics_log, clock)


class _TrainClock:
    """Seconds spent training (data loading and steps) since the loop began, with evaluation
    and checkpoint time left out (a resumed run continues from the time it had): the x axis of
    a learning curve by time. Wall-clock, and this process's CPU time (DataLoader worker
    processes are not in it; with one thread and no workers it is close to what the run takes
    on an idle core, however busy the machine)."""

    def __init__(self, already: float = 0.0, already_cpu: float = 0.0) -> None:
        self.start, self.start_cpu = time.perf_counter(), time.process_time()
        self.excluded, self.excluded_cpu = -already, -already_cpu

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.excluded

    def cpu_seconds(self) -> float:
        return time.process_time() - self.start_cpu - self.excluded_cpu

    def stamp(self) -> dict[str, float]:
        return {"train_s": round(self.seconds(), 3), "train_cpu_s": round(self.cpu_seconds(), 3)}

    @contextlib.contextmanager
    def paused(self):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t0
            self.excluded_cpu += time.process_time() - c0


MODEL_FILES = ("config.json", "open_clip_config.json", SUMMARY_FILE)


def refuse_to_overwrite(out: Path, resume: bool | str, overwrite: bool) -> bool:
    """A second run into the --out of a trained model would replace it (and every index built
    from it would refuse to open): only with --resume (continue that run) or --overwrite.
    True when an existing model is being replaced."""
    held = [f for f in MODEL_FILES if (out / f).is_file()]
    if not held or resume:
        return False
    if not overwrite:
        raise ConfigError(
            f"--out {out} already holds a trained model ({held[0]}); pass --resume to continue "
            "its run, --overwrite to replace it, or choose another --out"
        )
    log.warning("--overwrite: replacing the model in %s", out)
    return True


def _due(every: int, step: int, steps: int) -> bool:
    """A periodic eval/checkpoint at this step? (The last step has its own, in _finish.)"""
    return bool(every) and step % every == 0 and step < steps


def _state_path(cfg: TrainConfig, resume: bool | str) -> Path | None:
    if not resume:
        return None
    path = Path(resume) if isinstance(resume, str) else find_latest_state(Path(cfg.out))
    if path is None:
        raise ConfigError(f"--resume: no step checkpoint under {Path(cfg.out) / 'train_state'}")
    return path


def _setup(cfg: TrainConfig, state_path: Path | None, device: torch.device, info: DistInfo):
    tm = build_model(cfg)
    if cfg.lock_image:
        lock_tower(tm, "image", cfg.lock_image_unlocked_groups)
    if cfg.lock_text:
        lock_tower(tm, "text", cfg.lock_text_unlocked_layers)
    module = tm.module.to(device)
    siglip = cfg.loss == "siglip"
    hf_bias = getattr(getattr(module, "model", None), "logit_bias", None)  # HF SigLIP has one
    loss_params = LossParams(siglip and hf_bias is None).to(device)
    bias = (hf_bias if hf_bias is not None else loss_params.logit_bias) if siglip else None
    broadcast_module(module, info)
    encoder = tm.encoder(device)  # tokenizer + eval transform shared with index/serve
    module.train()
    freeze_frozen_modules(module)

    data = load_pairs(cfg.train, split_for(cfg.train, cfg.train_split, "train"))
    cfg = cfg.with_data_size(len(data))
    val = load_pairs(cfg.val, split_for(cfg.val, cfg.val_split, "val")) if cfg.val else None
    extra = (
        {"loss.logit_bias": loss_params.logit_bias} if loss_params.logit_bias is not None else {}
    )
    opt = build_optimizer(tm, cfg, extra)
    sched = build_scheduler(opt, cfg)
    amp_dtype = _precision(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    autocast = (
        (lambda: torch.autocast(device.type, dtype=amp_dtype))
        if amp_dtype is not None
        else contextlib.nullcontext
    )
    run = _Run(cfg, info, device, Path(cfg.out), tm, module, encoder, loss_params, bias, data, val,
               opt, sched, scaler, autocast)  # fmt: skip
    run.params = [p for g in opt.param_groups for p in g["params"]]
    if state_path is not None:
        run.start = load_state(state_path, module, opt, sched, loss_params, scaler, info, cfg)
        log.info("resumed from %s at step %d", state_path, run.start)
    else:
        torch.manual_seed(cfg.seed * 7919 + info.rank)  # dropout streams differ per rank
    if info.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    return run


def _loader(run: _Run) -> DataLoader:
    cfg, info = run.cfg, run.info
    sampler = StepBatchSampler(
        len(run.data), cfg.batch_size, cfg.seed, run.start, cfg.steps, info.rank, info.world
    )
    size = run.tm.preprocess.size
    ds = PairDataset(run.data, _train_transform(run.tm, cfg.augment), size, seed=cfg.seed)
    return DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
        # its own generator: creating the iterator must not consume the global RNG stream
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def _optimizer_step(run: _Run, batch: dict) -> float:
    """Forward/backward over one global batch, then clip, step and schedule; the batch loss."""
    device, scaler, opt = run.device, run.scaler, run.opt
    tokens = run.encoder.tokenize(batch["captions"])
    x = StepInputs(
        batch["pixels"].to(device, non_blocking=True),
        tokens["input_ids"].to(device),
        tokens["attention_mask"].to(device),
        BatchMeta(batch["image_ids"].to(device), batch["valid"].to(device)),
    )
    share = forward_backward(
        run.module,
        run.module.scale,
        x,
        run.info,
        run.cfg.accum_steps,
        run.cfg.loss,
        run.bias,
        run.autocast,
        loss_multiplier=scaler.get_scale() if scaler else 1.0,
    )
    sum_gradients(run.params, run.info)
    if scaler is not None:
        scaler.unscale_(opt)
    if run.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.params, run.cfg.grad_clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)
    run.sched.step()
    run.tm.clamp_temperature()
    return global_value(share, run.info)


def _finish(run: _Run, step, loss_value, last_eval, bad_rows, metrics_log, clock) -> TrainResult:
    """Last step checkpoint, the final model, the last evaluation and the run summary."""
    cfg, info, data = run.cfg, run.info, run.data
    at = clock.stamp()
    if cfg.save_every:
        _save(run, step)
    run.module.eval()
    spec = run.tm.save(run.out) if info.is_main else ""
    if run.val is not None:
        last_eval = _eval(run.encoder, run.val, cfg, info, metrics_log, step, at)
    skipped = {**dict(data.skipped), **({"unreadable_images": bad_rows} if bad_rows else {})}
    result = TrainResult(spec, step, loss_value, last_eval, skipped)
    if info.is_main:
        summary = {
            "model": spec,
            "steps": step,
            "final_loss": loss_value,
            "val": last_eval,
            "skipped": skipped,
            "rows": len(data),
            "images": data.num_images,
            **at,
        }
        (run.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    metrics_log.close()
    return result


def _row(step, cfg, data, opt, tm, loss_value, rate, bad_rows) -> dict[str, Any]:
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    first = next(iter(lrs.values()))
    return {
        "step": step,
        "epoch": round(step * cfg.batch_size / len(data), 4),
        "samples": step * cfg.batch_size,
        "loss": loss_value,
        "lr": first,
        "lr_image": lrs.get("image", lrs.get("image_no_decay", "")),
        "lr_text": lrs.get("text", lrs.get("text_no_decay", "")),
        "logit_scale": float(tm.logit_scale.detach().exp()),
        "samples_per_s": rate,
        "skipped_rows": bad_rows,
    }


def _eval(encoder, val, cfg, info, metrics_log, step, at: dict[str, float]) -> dict[str, Any]:
    if not info.is_main:
        return {}
    res = evaluate(encoder, val, cfg.eval_batch_size)
    freeze_frozen_modules(encoder.module)  # evaluate() restored .train() on everything
    metrics_log.write_eval(step, res, at)
    log.info("step %d: val t2i R@1 %.3f i2t R@1 %.3f", step, res["t2i"]["R@1"], res["i2t"]["R@1"])
    return res


def _save(run: _Run, step: int) -> None:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and next(run.module.parameters()).is_cuda:
        rng["cuda"] = torch.cuda.get_rng_state()
    rngs = all_gather_objects(rng, run.info)
    if run.info.is_main:
        save_state(run.out, step, run.module, run.opt, run.sched, run.loss_params, run.scaler,
                   rngs, run.cfg)  # fmt: skip
    barrier(run.info)


def _progress(cfg: TrainConfig, start: int, info: DistInfo):
    if not (cfg.progress and info.is_main):
        return None
    from tqdm import tqdm

    return tqdm(
        total=cfg.steps,
        initial=start,
        desc="train",
        unit="step",
        file=sys.stderr,
    )
