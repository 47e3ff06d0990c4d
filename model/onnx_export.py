"""Export an Encoder's two towers to ONNX (fp32, optionally int8 weights), cached per model.

Each graph ends in the unit embedding, so ONNX Runtime returns exactly what `Encoder.encode_*`
returns: image.onnx maps pixels (n, 3, H, W) → (n, d); text.onnx maps input_ids and
attention_mask (n, L) → (n, d), with n and L dynamic. Nothing is downloaded: the graphs are traced
from the weights already loaded.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._filelock import file_lock
from .encoder import Encoder
from .errors import ClipsearchError

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the exported graphs change, so caches are rebuilt
OPSET = 17
IMAGE_FILE, TEXT_FILE = "image.onnx", "text.onnx"
INT8_SUFFIX = ".int8.onnx"


@dataclass(frozen=True)
class OnnxTowers:
    """Paths of the two exported graphs."""

    image: Path
    text: Path


class _ImageGraph(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module.encode_image(pixels).float(), dim=-1)  # (n, d)


class _TextGraph(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module.encode_text(input_ids, attention_mask).float(), dim=-1)


def require_onnxruntime() -> None:
    """A clear error when the optional packages are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ClipsearchError(
            f"the onnx backend needs onnx and onnxruntime: pip install 'clipsearch[onnx]' ({e})"
        ) from e


def onnx_cache_dir(enc: Encoder) -> Path:
    """One directory per model (weights + config fingerprint) under the clipsearch cache."""
    from .starter import cache_root

    return cache_root() / "onnx" / f"{enc.fingerprint[:16]}-v{EXPORT_VERSION}"


def ensure_onnx(enc: Encoder, int8: bool = False, cache_dir: Path | None = None) -> OnnxTowers:
    """The exported towers for `enc`, exported (and quantised) once under a file lock."""
    require_onnxruntime()
    target = Path(cache_dir) if cache_dir else onnx_cache_dir(enc)
    towers = _towers(target, int8)
    if towers.image.is_file() and towers.text.is_file():
        return towers
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if not (target / IMAGE_FILE).is_file():  # another process may have exported it
            log.info(
                "exporting %s to ONNX once (a few seconds to a minute; cached in %s)",
                enc.spec,
                target,
            )
            t0 = time.perf_counter()
            _publish(target, lambda tmp: export_towers(enc, tmp))
            log.info("exported %s to ONNX in %.1fs", enc.spec, time.perf_counter() - t0)
        if int8 and not towers.image.is_file():
            _publish(target, lambda tmp: quantize_towers(_towers(target, False), tmp), merge=True)
    return towers


def _towers(d: Path, int8: bool) -> OnnxTowers:
    if int8:
        return OnnxTowers(
            d / IMAGE_FILE.replace(".onnx", INT8_SUFFIX),
            d / TEXT_FILE.replace(".onnx", INT8_SUFFIX),
        )
    return OnnxTowers(d / IMAGE_FILE, d / TEXT_FILE)


def _publish(target: Path, write, merge: bool = False) -> None:
    """Write into a temp dir beside `target`, then move into place: readers never see a half
    written graph. With merge, files are moved into the existing directory one by one."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        if merge:
            target.mkdir(exist_ok=True)
            for f in tmp.iterdir():
                f.replace(target / f.name)
        else:
            tmp.chmod(0o755)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_towers(enc: Encoder, out_dir: str | Path) -> OnnxTowers:
    """Trace both towers of `enc` (on CPU, fp32) into out_dir/image.onnx and out_dir/text.onnx."""
    require_onnxruntime()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = enc.module
    if next(module.parameters()).device.type != "cpu":
        import copy

        module = copy.deepcopy(module).cpu()
    module = module.float().eval()
    side = enc.preprocess_config.size
    pixels = torch.randn(2, 3, side, side)
    # two texts of different lengths, so the traced graph includes the padding path
    tokens = enc.tokenize(["a photo", "a photo of a cat sitting on a red chair"])
    towers = OnnxTowers(out / IMAGE_FILE, out / TEXT_FILE)
    with warnings.catch_warnings(), torch.no_grad(), _no_mha_fastpath():
        # The TorchScript exporter is deprecated in favour of the torch.export one, but in torch
        # 2.14 the latter took 5× longer on the starter and wrote an invalid text graph
        # (duplicate output name); the traced graphs here are checked for parity in the tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ImageGraph(module),
            (pixels,),
            str(towers.image),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        torch.onnx.export(
            _TextGraph(module),
            (tokens["input_ids"], tokens["attention_mask"]),
            str(towers.text),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    log.debug("exported %s to %s", enc.spec, out)
    return towers


@contextlib.contextmanager
def _no_mha_fastpath():
    """nn.MultiheadAttention's inference fast path (`_native_multi_head_attention`, taken e.g. by
    open_clip's unmasked SigLIP text tower) has no ONNX export; the regular path gives the same
    values."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def quantize_towers(fp32: OnnxTowers, out_dir: str | Path) -> OnnxTowers:
    """int8 dynamic quantisation of the MatMul/Gemm weights (activations stay fp32 at rest).
    Convolutions are left in fp32: ORT's ConvInteger is slower than its fp32 conv on CPU."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = _towers(Path(out_dir), True)
    hint = _DropHint("pre-processing before quantization")
    logging.getLogger().addFilter(hint)
    try:
        for src, dst in ((fp32.image, out.image), (fp32.text, out.text)):
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    finally:
        logging.getLogger().removeFilter(hint)
    return out


class _DropHint(logging.Filter):
    """ORT logs a hint on the root logger to run its shape-inference pre-pass, which fails on
    these graphs ("Incomplete symbolic shape inference"); the hint would only confuse users."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()
