"""Which model an index needs: the one check of a model against a version, and the one resolver
that loads the model a version was built with. Imports torch only when a model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from model.backends import DEFAULT_BACKEND, INT8_BACKENDS

from .errors import ModelMismatchError
from .manifest import Manifest, read_manifest

if TYPE_CHECKING:
    from model import Encoder


class HasManifest(Protocol):  # an IndexVersion (not imported: the reader imports this module)
    manifest: Manifest


def backend_of(encoder: Any) -> str:
    """The backend an encoder really runs on ("torch", "onnx", "onnx-int8"; never "auto": the
    loader resolves it); an encoder-like object without the attribute is PyTorch."""
    return getattr(encoder, "backend", "torch")


def check_model(
    manifest_or_version: Manifest | HasManifest,
    fingerprint: str,
    spec: str | None = None,
    backend: str | None = None,
) -> None:
    """Raise ModelMismatchError unless a model with `fingerprint` may search the version.
    When the difference is the backend (int8 weights give other vectors), say how to fix it."""
    m = manifest_or_version if isinstance(manifest_or_version, Manifest) else (
        manifest_or_version.manifest
    )  # fmt: skip
    if fingerprint == m.fingerprint:
        return
    name = m.version or "?"
    if backend is not None and (backend in INT8_BACKENDS) != (m.backend in INT8_BACKENDS):
        raise ModelMismatchError(
            f"index version {name} was built with model {m.model!r} on the {m.backend} backend; "
            f"the {backend} backend gives other vectors: build the index with "
            f"{_backend_flag(backend)} to search it with that backend, or search with "
            f"{_backend_flag(m.backend)}"
        )
    loaded = f"the loaded model {spec!r}" if spec else "the loaded model"
    raise ModelMismatchError(
        f"index version {name} was built with model {m.model!r} "
        f"(fingerprint {m.fingerprint[:12]}…), but {loaded} has fingerprint {fingerprint[:12]}…; "
        "load the same model or rebuild the index"
    )


def _backend_flag(backend: str) -> str:
    """How to ask for `backend`'s vectors: auto, torch and onnx all give PyTorch's, so an index
    built with any of them takes the default."""
    if backend in INT8_BACKENDS:
        return f"--backend {backend}"
    return f"the default backend (--backend {DEFAULT_BACKEND}, torch or onnx)"


def encoder_for_index(
    index_dir: str | Path,
    *,
    model: str | None = None,
    device: str | None = None,
    backend: str = DEFAULT_BACKEND,
) -> Encoder:
    """Load the encoder the live version needs (`model`, default the version's own) and check it
    against the version. Reads only the live manifest, not the index files."""
    from model import load_encoder

    manifest = read_manifest(index_dir)
    encoder = load_encoder(model or manifest.model, device=device, backend=backend)
    check_model(manifest, encoder.fingerprint, encoder.spec, backend_of(encoder))
    return encoder
