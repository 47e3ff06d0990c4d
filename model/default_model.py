"""The default model: the best one this machine can have.

With a warm Hugging Face cache or a reachable hub that is a real pretrained CLIP,
`open_clip:ViT-B-32/laion2b_s34b_b79k` (why this one: docs/models.md, "The default model"),
fetched once with a progress bar; without either it is the offline starter, with one line that
says how to get the better model. `--model default` (or no `--model`) names it; what it
resolved to is the concrete spec an index records, so later commands never switch models.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_WORD = "default"  # the spec that stands for "the best model this machine can have"
DEFAULT_ARCH, DEFAULT_TAG = "ViT-B-32", "laion2b_s34b_b79k"
DEFAULT_MODEL = f"open_clip:{DEFAULT_ARCH}/{DEFAULT_TAG}"
FALLBACK_MODEL = "starter"
DEFAULT_SIZE = "about 600 MB"  # the fp32 safetensors of a ViT-B/32 CLIP (151 M parameters)


def is_default(spec: object) -> bool:
    return isinstance(spec, str) and spec.strip() == DEFAULT_WORD


def default_hub_files() -> tuple[str, tuple[str, ...]]:
    """(hub repo, weight files in the order open_clip tries them) of the default's pretrained
    tag, read from open_clip's own registry: the files its `create_model` looks up."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = open_clip.get_pretrained_cfg(DEFAULT_ARCH, DEFAULT_TAG)
    # open_clip's hf_hub entry is 'org/name/' (its default file names) or 'org/name/file'
    repo, filename = os.path.split(cfg["hf_hub"])
    if not filename or filename == HF_WEIGHTS_NAME:
        return repo, (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
    if filename.endswith((".bin", ".pth")):  # open_clip prefers a safetensors twin
        return repo, (str(Path(filename).with_suffix(".safetensors")), filename)
    return repo, (filename,)


def cached_default_weights() -> str | None:
    """The path of the default's weights in the local Hugging Face cache, or None. Reads only
    the disk (the cache huggingface_hub uses: HF_HUB_CACHE / HF_HOME)."""
    from huggingface_hub import try_to_load_from_cache

    repo, files = default_hub_files()
    for name in files:
        path = try_to_load_from_cache(repo, name)
        if isinstance(path, str):
            return path
    return None


def fallback_notice(why: str) -> str:
    """The one line shown when the default falls back to the starter."""
    return (
        f"using the offline starter model: the default model {DEFAULT_MODEL} {why}; "
        f"run once with network access to fetch it ({DEFAULT_SIZE}; later runs work offline), "
        "or pass --model starter to hide this notice"
    )


def resolve_default_model(
    *, fetch: bool = True, progress: bool = True, notify: Callable[[str], None] | None = None
) -> str:
    """The concrete spec the default stands for on this machine: DEFAULT_MODEL when its weights
    are in the hub cache or the hub answers (then, with `fetch`, downloaded now, with a progress
    bar unless `progress` is False), else FALLBACK_MODEL with one notice. `notify` receives the
    notices (default: this module's logger)."""
    if cached_default_weights():
        return DEFAULT_MODEL
    from .hf_clip import _offline_mode, hub_reachable

    if not hub_reachable():
        why = (
            "offline mode is set (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
            if _offline_mode()
            else "the hub cannot be reached"
        )
        (notify or log.warning)(fallback_notice(f"is not in the Hugging Face cache and {why}"))
        return FALLBACK_MODEL
    if not fetch:
        return DEFAULT_MODEL
    (notify or log.info)(
        f"fetching the default model {DEFAULT_MODEL} ({DEFAULT_SIZE}, once) from the "
        "Hugging Face hub; --model starter skips it"
    )
    try:
        fetch_default_weights(progress=progress)
    except Exception as e:  # transport error, a moved file: the starter still works
        log.info("fetching %s failed", DEFAULT_MODEL, exc_info=True)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        (notify or log.warning)(fallback_notice(f"could not be fetched ({first})"))
        return FALLBACK_MODEL
    return DEFAULT_MODEL


def fetch_default_weights(progress: bool = True) -> str:
    """Download the default's weights into the hub cache (the first file open_clip accepts)
    and return the path. The bar is tqdm's own, so it shows even where Hugging Face's bars are
    switched off for quiet model loading (the CLI does that)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm
    repo, files = default_hub_files()
    for name in files[:-1]:
        try:
            return hf_hub_download(repo, name, tqdm_class=bar)
        except EntryNotFoundError:  # no safetensors twin: open_clip takes the next file
            continue
    return hf_hub_download(repo, files[-1], tqdm_class=bar)
