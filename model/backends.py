"""The names of the encoder backends, in a torch-free module so a command-line parser (or
anything else) can offer them without importing the model code."""

from __future__ import annotations

# "torch": PyTorch on CPU or CUDA. "onnx": the same fp32 weights run by ONNX Runtime on the CPU
# (model/onnx_backend.py); "onnx-int8": with int8 MatMul weights (a different fingerprint).
# docs/benchmarks.md has the measured speed and quality.
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "torch"
# Backends whose vectors (and so fingerprints) differ from PyTorch's: an index built with one of
# them is searched with that backend only.
INT8_BACKENDS: tuple[str, ...] = ("onnx-int8",)
