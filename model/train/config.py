"""TrainConfig: every knob of a training run in one typed dataclass, loadable from a JSON/YAML
file and overridable from the command line (file < CLI flags)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClipsearchError

DEFAULT_STEPS = 1000


class ConfigError(ClipsearchError, ValueError):
    code = "invalid_train_config"


def knob(default: Any, help: str) -> Any:
    """A TrainConfig field with its --flag help: `clipsearch train` builds one flag per field
    from these (name, type, default and help), so the CLI never keeps its own copy."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # -- data and output
    train: str = knob("", "manifest (.csv/.tsv/.jsonl), folder of x.jpg + x.txt, or .tar shards")
    val: str | None = knob(None, "validation data (same formats): Recall@K during training")
    out: str = knob("", "output directory: final model, train_state/, metrics.csv")
    train_split: str | None = knob(None, "Karpathy split file --train: its split (default: train)")
    val_split: str | None = knob(None, "Karpathy split file --val: its split (default: val)")
    # -- initialisation
    init: str = knob(
        "scratch",
        "scratch | starter | an OpenAI name (ViT-B/32, RN50, ...) | open_clip:ARCH/TAG | "
        "open_clip:hf-hub:ORG/REPO | open_clip:local-dir:DIR | hf:<hub id or dir> | <model dir>",
    )
    model_config: str = knob(
        "base", "scratch: a preset (tiny, small, base; model/presets/) or a DualEncoderConfig JSON"
    )
    image_tower: str | None = knob(None, "scratch: a timm model name instead of --model-config")
    text_tower: str | None = knob(
        None, "scratch: a transformers id/dir (config + tokenizer) instead of --model-config"
    )
    pretrained_towers: bool = knob(False, "scratch: start the towers from pretrained weights")
    tokenizer: str | None = knob(None, "tokenizer dir/id (default: the text tower's)")
    embed_dim: int = knob(512, "scratch: shared embedding width")
    image_head: str = knob(
        "keep", "starter: keep (ConSE) | linear (linear head on pooled features)"
    )
    # -- objective
    loss: str = knob("infonce", "infonce | siglip")
    # -- optimisation (by steps; batch_size is global: all ranks × all accumulation chunks)
    steps: int | None = knob(None, "optimizer steps (default: 1000, or from --epochs)")
    epochs: float | None = knob(None, "passes over the training rows instead of --steps")
    batch_size: int = knob(64, "global batch (all processes, all accumulation chunks)")
    accum_steps: int = knob(1, "chunks per batch; negatives stay full-batch")
    lr: float = knob(5e-4, "peak learning rate (default: 5e-4, or the --model-config preset's)")
    lr_image: float | None = knob(None, "image tower learning rate (default: --lr)")
    lr_text: float | None = knob(None, "text tower learning rate (default: --lr)")
    weight_decay: float = knob(
        0.1, "AdamW decay, never on norms, biases, temperature (default: 0.1, or the preset's)"
    )
    beta1: float = knob(0.9, "AdamW beta1")
    beta2: float = knob(0.98, "AdamW beta2")
    eps: float = knob(1e-6, "AdamW eps")
    warmup_steps: int = knob(
        100, "linear warmup steps before the cosine decay (default: 100, or the preset's)"
    )
    min_lr_ratio: float = knob(0.0, "cosine floor as a fraction of the peak")
    grad_clip: float = knob(1.0, "max global gradient norm (0: off)")
    precision: str = knob("auto", "auto (bf16/fp16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16")
    # -- LiT-style locking (the towers' projection heads stay trainable)
    lock_image: bool = knob(False, "LiT: freeze the image tower's trunk")
    lock_image_unlocked_groups: int = knob(0, "leave this many last image layer groups trainable")
    lock_text: bool = knob(False, "freeze the text tower's trunk")
    lock_text_unlocked_layers: int = knob(0, "leave this many last text layers trainable")
    # -- run
    overwrite: bool = knob(False, "replace the model already in --out (default: refuse)")
    seed: int = knob(0, "seed for initialisation, data order and dropout")
    workers: int = knob(2, "DataLoader worker processes")
    device: str | None = knob(None, "cpu, cuda … (default: CUDA if present, per local rank)")
    augment: bool = knob(False, "mild random resized crops (default: the eval transform)")
    save_every: int = knob(500, "step checkpoint interval for --resume (0: only at the end)")
    keep_checkpoints: int = knob(2, "step checkpoints to keep")
    eval_every: int = knob(0, "evaluate --val every N steps (0: only at the end)")
    eval_batch_size: int = knob(64, "batch size for evaluation")
    log_every: int = knob(10, "metrics.csv interval in steps")
    tensorboard: bool = knob(True, "also write TensorBoard events (if installed)")
    progress: bool = knob(True, "show a progress bar")
    # free-form notes kept with the run (config files only: no flag)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        if not self.train:
            raise ConfigError("no training data: give --train DATA")
        if not self.out:
            raise ConfigError("no output directory: give --out DIR")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give --steps or --epochs, not both")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        for name in ("steps", "batch_size", "accum_steps", "log_every", "keep_checkpoints"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.accum_steps:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by accum_steps {self.accum_steps}"
            )
        if self.loss not in ("infonce", "siglip"):
            raise ConfigError(f"loss must be 'infonce' or 'siglip', got {self.loss!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto/fp32/bf16/fp16, got {self.precision!r}")
        if self.image_head not in ("keep", "linear"):
            raise ConfigError(f"image_head must be 'keep' or 'linear', got {self.image_head!r}")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ConfigError("lr must be > 0 and warmup_steps >= 0")
        return self

    def with_data_size(self, rows: int) -> TrainConfig:
        """The config with `steps` fixed: as given, from `epochs` × full batches per pass over
        `rows` (the sampler drops a ragged tail), or DEFAULT_STEPS."""
        if self.steps is not None:
            return self
        if self.epochs is None:
            return dataclasses.replace(self, steps=DEFAULT_STEPS)
        per_epoch = rows // self.batch_size
        if per_epoch < 1:
            raise ConfigError(f"batch_size {self.batch_size} is larger than the data ({rows} rows)")
        return dataclasses.replace(self, steps=max(1, round(self.epochs * per_epoch)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


def field_types() -> dict[str, type]:
    """name → the plain type of each field (Optional stripped), for CLI flag parsing."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        t = hints[f.name]
        if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
            t = next(a for a in typing.get_args(t) if a is not type(None))
        out[f.name] = typing.get_origin(t) or t
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or YAML mapping of TrainConfig fields (dashes or underscores in keys)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as e:  # json.JSONDecodeError and yaml.YAMLError both
        raise ConfigError(f"{path}: not valid {p.suffix.lstrip('.') or 'JSON'}: {e}") from e
    except Exception as e:  # yaml.YAMLError does not subclass ValueError
        raise ConfigError(f"{path}: cannot parse: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def make_config(file: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < the --model-config preset's training defaults < config file < overrides
    (None values in overrides mean 'not given')."""
    d: dict[str, Any] = load_config_file(file) if file else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    for a, b in (("steps", "epochs"), ("epochs", "steps")):
        if a in given and b not in given:
            d.pop(b, None)  # --epochs on the command line replaces the file's steps (and back)
    d.update(given)
    return TrainConfig.from_dict({**preset_train_defaults(d), **d})


def preset_train_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """The "train" block of the preset (or model-config file) a from-scratch run builds: the
    learning rate and warmup that suit that architecture, e.g. the tiny preset's higher lr, so
    `--model-config tiny --epochs 5` works as typed. Empty for other inits; a model config that
    cannot be read is reported when the model is built."""
    if d.get("init", "scratch") != "scratch" or d.get("image_tower") or d.get("text_tower"):
        return {}
    from ..presets import PRESET_DIR, preset_names

    name = d.get("model_config", TrainConfig.model_config)
    path = PRESET_DIR / f"{name}.json" if name in preset_names() else Path(name)
    try:
        block = json.loads(path.read_text()).get("train", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(block, dict):
        raise ConfigError(f'--model-config {name}: its "train" block must be a mapping')
    return {k.replace("-", "_"): v for k, v in block.items()}
