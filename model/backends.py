"""The names of the encoder backends, in a torch-free module so a command-line parser (or
anything else) can offer them without importing the model code."""

from __future__ import annotations

# "auto" (the default): ONNX Runtime fp32 on a CPU when the model exports and the export's
# vectors match PyTorch's (a parity check, recorded in the export cache), PyTorch otherwise and
# on CUDA; the encoder's `backend` then names the one chosen. "torch": PyTorch on CPU or CUDA.
# "onnx": the same fp32 weights run by ONNX Runtime on the CPU (model/onnx_backend.py);
# "onnx-int8": with int8 MatMul weights (a different fingerprint).
# docs/benchmarks.md has the measured speed and quality.
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "auto"
# Backends whose vectors (and so fingerprints) differ from PyTorch's: an index built with one of
# them is searched with that backend only. auto, torch and onnx give the same vectors.
INT8_BACKENDS: tuple[str, ...] = ("onnx-int8",)
