"""clip-retrieval (PyPI 2.45.0) in an isolated virtual environment, built once and cached, for
the tests and the benchmark that drive the real clip-retrieval against clipsearch.

Why not `pip install clip-retrieval` into the project's venv: it pins numpy<2, pandas<3,
pyarrow<16 and pulls in sentence-transformers, img2dataset, opencv, albumentations and a second
torch. Instead the env sees the project venv's site-packages through a `.pth` file (torch,
transformers, faiss, pandas, pyarrow, open_clip, requests come from there: one torch) and adds,
with `--no-deps`, only the small packages clip-retrieval imports that the project lacks. The set
in PACKAGES is the minimum with which `clip_retrieval.clip_client` and `clip-retrieval inference |
index | back | front` import and run.

Three adaptations are made at run time by a launcher module written into the env (the
installed files are never edited); run the CLI through `env.cli(...)`:
- transformers 5 returns a model output from `CLIPModel.get_image_features` /
  `get_text_features`, where all_clip 1.3's `HFClipWrapper` expects the feature tensor;
- autofaiss 2.18 (`clip-retrieval index`) json-dumps numpy scalars, which numpy 2 refuses;
- `clip-retrieval front` hard-codes port 1235: `front_on_port PORT ...` runs the same Flask app
  (clip_front.add_static_endpoints, the wheel's own static build) on a free port.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = "2.45.0"
# pinned: what clip-retrieval imports at top level and the project venv lacks
PACKAGES = (
    f"clip-retrieval=={VERSION}",
    "all-clip==1.3.0",  # load_clip (hf_clip:, open_clip:, openai ViT-B/32)
    "clip-anytorch==2.6.0",  # `clip.tokenize`, all_clip's tokenizer for hf_clip models
    "setuptools==65.5.0",  # `pkg_resources.packaging`, which `clip` and clip_front import
    "fire==0.7.1",
    "termcolor==3.3.0",
    "flask==3.1.3",
    "itsdangerous==2.2.0",
    "blinker==1.9.0",
    "flask-restful==0.3.10",
    "aniso8601==10.0.1",
    "flask-cors==6.0.5",
    "h5py==3.16.0",  # clip_back's metadata providers
    "prometheus-client==0.26.0",  # clip_back's /metrics
    "wandb==0.31.0",  # clip_inference.logger imports it at top level (we run it disabled)
    "platformdirs==4.14.9",
    "xxhash==4.1.0",
    "braceexpand==0.1.7",  # clip_inference's reader
    "webdataset==0.2.111",  # --input_format webdataset (the way to embed captions, see below)
    "autofaiss==2.18.0",  # `clip-retrieval index`
    "embedding-reader==1.8.1",
)
LAUNCHER = "clipsearch_cr_launch"

_LAUNCHER_SOURCE = '''"""clip-retrieval's CLI with clipsearch's run-time adaptations (see
tests/utils/clip_retrieval_env.py in the clipsearch repository)."""

import sys


def _patch_hf_clip():
    """transformers 5 returns BaseModelOutputWithPooling from get_*_features; all_clip wants the
    projected features, which are its pooler_output."""
    import all_clip.hf_clip as hf

    def tensor(out):
        return out if hasattr(out, "norm") else out.pooler_output

    encode_image, encode_text = hf.HFClipWrapper.encode_image, hf.HFClipWrapper.encode_text
    hf.HFClipWrapper.encode_image = lambda self, image: tensor(encode_image(self, image))
    hf.HFClipWrapper.encode_text = lambda self, text: tensor(encode_text(self, text))


def front_on_port(
    port, default_backend=None, default_index=None, url_column="url", host="127.0.0.1"
):
    """clip_retrieval.clip_front.clip_front, on `port` instead of its hard-coded 1235."""
    from flask import Flask
    from clip_retrieval.clip_front import add_static_endpoints

    app = Flask("clip_retrieval.clip_front")
    add_static_endpoints(app, default_backend, default_index, url_column)
    app.run(host=host, port=int(port), debug=False)


def _patch_autofaiss_json():
    """autofaiss 2.18 predates numpy 2: the metrics it writes next to an index hold numpy
    scalars, which json.dump refuses (after the index file is written)."""
    import json
    import types

    import autofaiss.external.optimize as optimize
    import autofaiss.external.quantize as quantize

    def default(o):
        if hasattr(o, "item"):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    def dump(obj, fp, **kw):
        return json.dump(obj, fp, default=default, **kw)

    optimize.json = quantize.json = types.SimpleNamespace(
        dump=dump, dumps=json.dumps, load=json.load, loads=json.loads
    )


def main():
    if sys.argv[1:2] == ["index"]:
        _patch_autofaiss_json()
    if sys.argv[1:2] == ["front_on_port"]:
        import fire

        fire.Fire(front_on_port, command=sys.argv[2:])
        return
    _patch_hf_clip()
    from clip_retrieval.cli import main as cli_main

    sys.argv[0] = "clip-retrieval"
    cli_main()


if __name__ == "__main__":
    main()
'''


@dataclass(frozen=True)
class ClipRetrievalEnv:
    """A ready env: its interpreter, and how to run clip-retrieval's CLI and scripts in it."""

    root: Path
    python: Path
    install_seconds: float

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment for clip-retrieval: offline, wandb off, no repo on the path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            WANDB_MODE="disabled",
            WANDB_SILENT="true",
            TOKENIZERS_PARALLELISM="false",
            PYTHONWARNINGS="ignore",
        )
        return {**env, **(extra or {})}

    def cli(self, *args: str) -> list[str]:
        """argv for `clip-retrieval ARGS` (through the launcher)."""
        return [str(self.python), "-m", LAUNCHER, *map(str, args)]

    def run_cli(self, *args: str, timeout: float = 600, cwd: Path | None = None) -> str:
        """Run `clip-retrieval ARGS` to completion; its output, or AssertionError with it."""
        p = subprocess.run(
            self.cli(*args), cwd=cwd, env=self.environ(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        out = p.stdout + p.stderr
        if p.returncode != 0:
            raise AssertionError(
                f"clip-retrieval {' '.join(map(str, args))} exited {p.returncode}:\n{out[-4000:]}"
            )
        return out

    def run_json(self, script: str, payload: Any, timeout: float = 300) -> Any:
        """Run a Python `script` in the env with `payload` as JSON on stdin; the JSON it prints
        on its last stdout line."""
        p = subprocess.run(
            [str(self.python), "-c", script], input=json.dumps(payload), env=self.environ(),
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if p.returncode != 0 or not p.stdout.strip():
            raise AssertionError(f"script exited {p.returncode}:\n{p.stderr[-4000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])


def _main_site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def env_key() -> str:
    """Changes when anything the env is built from changes (pins, Python, the project venv)."""
    h = hashlib.sha256(
        json.dumps([PACKAGES, sys.version, str(_main_site_packages())]).encode()
    ).hexdigest()
    return f"clip-retrieval-{VERSION}-{h[:12]}"


def ensure_env(cache_dir: str | Path) -> ClipRetrievalEnv:
    """The env under `cache_dir/<env_key()>`, built on first use (20–30 s here, downloads
    included; the time goes to the log and `install_seconds`); safe when several processes ask
    at once (a file lock)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    root = cache_dir / env_key()
    with open(cache_dir / f"{env_key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / "clipsearch-ready.json"
        if not ready.is_file():
            _build(root)
        _write_launcher(root)
        info = json.loads(ready.read_text())
    return ClipRetrievalEnv(root, root / "bin" / "python", info["install_seconds"])


def _site_packages(root: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return root / "lib" / version / "site-packages"


def _build(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    # no pip inside: the project venv's pip installs into it (`pip --python`), which saves the
    # ensurepip step; the .pth comes last so pip sees a bare env and never touches the project's
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    cmd = [
        sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
        "--no-deps", "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
        *PACKAGES,
    ]  # fmt: skip
    with open(root / "install.log", "w") as fh:
        p = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        tail = (root / "install.log").read_text()[-3000:]
        raise RuntimeError(f"installing clip-retrieval {VERSION} into {root} failed:\n{tail}")
    (_site_packages(root) / "main_venv.pth").write_text(str(_main_site_packages()) + "\n")
    seconds = round(time.perf_counter() - t0, 1)
    log.warning("built the clip-retrieval %s env in %s s: %s", VERSION, seconds, root)
    (root / "clipsearch-ready.json").write_text(
        json.dumps({"packages": PACKAGES, "install_seconds": seconds})
    )


def _write_launcher(root: Path) -> None:
    path = _site_packages(root) / f"{LAUNCHER}.py"
    if not path.is_file() or path.read_text() != _LAUNCHER_SOURCE:
        path.write_text(_LAUNCHER_SOURCE)


def pytest_cache_env(config) -> ClipRetrievalEnv:
    """`ensure_env` under pytest's cache folder (kept between runs; `--cache-clear` rebuilds),
    or the temp folder when the cache plugin is off (`-p no:cacheprovider`)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return ensure_env(Path(tempfile.gettempdir()) / "clipsearch-clip-retrieval-env")
    return ensure_env(cache.mkdir("clip_retrieval_env"))
