"""Step checkpoints for exact --resume: model, optimizer, scheduler, loss parameters, AMP scaler,
every rank's RNG state and the data position (the step). One torch file per step, written
atomically; loaded with weights_only=True (no pickle of arbitrary objects)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, TrainConfig
from .distributed import DistInfo

log = logging.getLogger(__name__)

STATE_DIR = "train_state"
_NAME = re.compile(r"^step_(\d+)\.pt$")
# a resumed run must agree with the saved one on everything that shapes the batch stream
_MUST_MATCH = ("train", "batch_size", "accum_steps", "seed", "steps", "loss", "init")


def state_files(out: Path) -> list[Path]:
    d = out / STATE_DIR
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def find_latest_state(out: Path) -> Path | None:
    files = state_files(out)
    return files[-1] if files else None


def save_state(
    out: Path, step: int, module, opt, sched, loss_params, scaler, rngs: list[dict], cfg
) -> Path:
    d = out / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": module.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "loss_params": loss_params.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rngs,  # one entry per rank
        "config": json.dumps(cfg.to_dict()),
    }
    path = d / f"step_{step:08d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half file under the real name
    for old in state_files(out)[: -cfg.keep_checkpoints]:
        old.unlink(missing_ok=True)
    log.info("saved step checkpoint %s", path)
    return path


def load_state(
    path: Path, module, opt, sched, loss_params, scaler, info: DistInfo, cfg: TrainConfig
) -> int:
    """Restore everything from `path`; returns the step to continue from."""
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise ConfigError(f"cannot read step checkpoint {path}: {e}") from e
    saved = json.loads(state["config"])
    diff = [k for k in _MUST_MATCH if saved.get(k) != getattr(cfg, k)]
    if diff:
        raise ConfigError(
            f"--resume: {', '.join(diff)} differ from the saved run "
            f"({', '.join(f'{k}={saved.get(k)!r}' for k in diff)})"
        )
    if len(state["rng"]) != info.world:
        raise ConfigError(
            f"--resume: the run was saved with {len(state['rng'])} processes, now {info.world}"
        )
    module.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    loss_params.load_state_dict(state["loss_params"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    rng = state["rng"][info.rank]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return int(state["step"])
