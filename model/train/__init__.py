"""Contrastive training and evaluation (`clipsearch train`, `clipsearch eval`).

Only the train/eval commands import this package; the indexer and the server never do, so
training-only dependencies stay out of the serving import graph. Exports resolve lazily, so
`model.train.config` (TrainConfig, which the CLI reads to build its flags) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConfigError": "config",
    "TrainConfig": "config",
    "make_config": "config",
    "DataError": "data",
    "PairData": "data",
    "load_pairs": "data",
    "evaluate": "evaluate",
    "TrainResult": "loop",
    "train": "loop",
}
__all__ = [
    "ConfigError",
    "DataError",
    "PairData",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_pairs",
    "make_config",
    "train",
]

if TYPE_CHECKING:
    from .config import ConfigError, TrainConfig, make_config
    from .data import DataError, PairData, load_pairs
    from .evaluate import evaluate
    from .loop import TrainResult, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
