"""A Hugging Face hub cache written by hand: the layout huggingface_hub reads offline
(`models--ORG--NAME/refs/main` → `snapshots/<commit>/<file>`), so a test can place a model
"already downloaded" under a real repo id and let the real loading code find it.

`use_hub_cache` points huggingface_hub at a temporary cache: the environment (for child
processes) and its constants (read once at import, so the running process needs them set too).
`local_hub` serves files over HTTP on 127.0.0.1 as the hub does, for the download path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> Path:
    from huggingface_hub import constants

    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def snapshot_dir(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` in `cache` (created, with refs/main pointing at it)."""
    root = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def write_default_in_cache(cache: Path, seed: int = 0) -> torch.nn.Module:
    """A random-weight model of the default's architecture (open_clip's own config, unchanged),
    written as its hub repo holds it (open_clip_config.json + open_clip_model.safetensors)
    under the default's repo id, and returned (in eval mode) as the reference for what the
    loader builds. The weights are stored in fp16 (half the disk; open_clip casts them on load),
    rounded so first: the returned model holds exactly the values the file does."""
    import open_clip
    from safetensors.torch import save_file

    from model.default_model import DEFAULT_ARCH, DEFAULT_TAG, default_hub_files

    repo, files = default_hub_files()
    snap = snapshot_dir(cache, repo)
    torch.manual_seed(seed)
    model = open_clip.create_model(DEFAULT_ARCH, pretrained=None)
    tag = open_clip.get_pretrained_cfg(DEFAULT_ARCH, DEFAULT_TAG)
    pre = {k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag}
    config = {"model_cfg": open_clip.get_model_config(DEFAULT_ARCH), "preprocess_cfg": pre}
    (snap / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(snap / files[0]))
    return model.eval()


@contextlib.contextmanager
def local_hub(monkeypatch: pytest.MonkeyPatch, files: dict[tuple[str, str], bytes]):
    """A Hugging Face hub on 127.0.0.1 that serves `files` ({(repo id, file name): bytes}) the
    way huggingface_hub downloads them (HEAD for the commit, ETag and size, then GET); any other
    path answers 200 (the reachability probe). Offline mode is switched off and huggingface_hub
    pointed at it. Yields the list of file downloads (repo id, file name) it served."""
    from huggingface_hub import constants

    served: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def _answer(self, body: bool) -> None:
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", self.path)
            key = (m[1], m[2]) if m else None
            if key is not None and key not in files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
            else:
                self.send_response(200)
            data = files.get(key, b"") if key else b""
            if key in files:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body and key in files:
                served.append(key)
                self.wfile.write(data)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
