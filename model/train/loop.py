"""The training loop: data → steps → step checkpoints (exact --resume) → final model + metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
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
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    device = local_device(device)
    result = _train(cfg, resume, device, info)
    barrier(info)  # rank 0 saves and evaluates last; everyone leaves together
    return result


def _train(cfg: TrainConfig, resume: bool | str, device: torch.device, info: DistInfo):
    out = Path(cfg.out)
    if cfg.batch_size % (info.world * cfg.accum_steps):
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by ranks × accum_steps "
            f"({info.world} × {cfg.accum_steps})"
        )
    state_path = None
    if resume:
        state_path = Path(resume) if isinstance(resume, str) else find_latest_state(out)
        if state_path is None:
            raise ConfigError(f"--resume: no step checkpoint under {out / 'train_state'}")

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

    data = load_pairs(cfg.train)
    val = load_pairs(cfg.val) if cfg.val else None
    extra = (
        {"loss.logit_bias": loss_params.logit_bias} if loss_params.logit_bias is not None else {}
    )
    opt = build_optimizer(tm, cfg, extra)
    sched = build_scheduler(opt, cfg)
    amp_dtype = _precision(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    start = 0
    if state_path is not None:
        start = load_state(state_path, module, opt, sched, loss_params, scaler, info, cfg)
        log.info("resumed from %s at step %d", state_path, start)
    else:
        torch.manual_seed(cfg.seed * 7919 + info.rank)  # dropout streams differ per rank
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))

    sampler = StepBatchSampler(
        len(data), cfg.batch_size, cfg.seed, start, cfg.steps, info.rank, info.world
    )
    ds = PairDataset(data, _train_transform(tm, cfg.augment), tm.preprocess.size, seed=cfg.seed)
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        # its own generator: creating the iterator must not consume the global RNG stream
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    autocast = (
        (lambda: torch.autocast(device.type, dtype=amp_dtype))
        if amp_dtype is not None
        else contextlib.nullcontext
    )
    params = [p for g in opt.param_groups for p in g["params"]]
    metrics_log = MetricsLog(out, start, enabled=info.is_main, tensorboard=cfg.tensorboard)
    bar = _progress(cfg, start, info)
    bad_rows = 0
    loss_value = math.nan
    last_eval: dict[str, Any] = {}
    t_last, samples_since = time.perf_counter(), 0
    step = start
    for batch in loader:
        tokens = encoder.tokenize(batch["captions"])
        x = StepInputs(
            batch["pixels"].to(device, non_blocking=True),
            tokens["input_ids"].to(device),
            tokens["attention_mask"].to(device),
            BatchMeta(batch["image_ids"].to(device), batch["valid"].to(device)),
        )
        bad_rows += int((~batch["valid"]).sum())
        share = forward_backward(
            module,
            module.scale,
            x,
            info,
            cfg.accum_steps,
            cfg.loss,
            bias,
            autocast,
            loss_multiplier=scaler.get_scale() if scaler else 1.0,
        )
        sum_gradients(params, info)
        if scaler is not None:
            scaler.unscale_(opt)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        tm.clamp_temperature()
        step += 1
        loss_value = global_value(share, info)
        samples_since += cfg.batch_size
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            rate = samples_since / max(now - t_last, 1e-9)
            t_last, samples_since = now, 0
            row = _row(step, cfg, data, opt, tm, loss_value, rate, bad_rows)
            metrics_log.write(row)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}", sps=f"{rate:.1f}", lr=f"{row['lr']:.2e}")
        if bar is not None:
            bar.update(1)
        if cfg.eval_every and val is not None and step % cfg.eval_every == 0 and step < cfg.steps:
            last_eval = _eval(encoder, val, cfg, info, metrics_log, step)
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            _save(out, step, module, opt, sched, loss_params, scaler, info, cfg)
    if bar is not None:
        bar.close()
    if step != cfg.steps:
        raise RuntimeError(f"data ran out at step {step} of {cfg.steps}")
    if cfg.save_every:
        _save(out, step, module, opt, sched, loss_params, scaler, info, cfg)
    module.eval()
    spec = tm.save(out) if info.is_main else ""
    if val is not None:
        last_eval = _eval(encoder, val, cfg, info, metrics_log, step)
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
        }
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
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


def _eval(encoder, val, cfg, info, metrics_log, step) -> dict[str, Any]:
    if not info.is_main:
        return {}
    res = evaluate(encoder, val, cfg.eval_batch_size)
    freeze_frozen_modules(encoder.module)  # evaluate() restored .train() on everything
    metrics_log.write_eval(step, res)
    log.info("step %d: val t2i R@1 %.3f i2t R@1 %.3f", step, res["t2i"]["R@1"], res["i2t"]["R@1"])
    return res


def _save(out, step, module, opt, sched, loss_params, scaler, info, cfg) -> None:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and next(module.parameters()).is_cuda:
        rng["cuda"] = torch.cuda.get_rng_state()
    rngs = all_gather_objects(rng, info)
    if info.is_main:
        save_state(out, step, module, opt, sched, loss_params, scaler, rngs, cfg)
    barrier(info)


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
        disable=os.environ.get("CLIPSEARCH_NO_PROGRESS") == "1",
    )
