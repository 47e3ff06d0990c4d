"""A real `clipsearch serve` on a free loopback port, over an index of real photos with captions,
and a headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = os.environ.get("CLIPSEARCH_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CLIPSEARCH_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def web_corpus(tmp_path_factory) -> Path:
    """The same captioned corpus `clipsearch demo` serves (photos + rendered shapes)."""
    from model.samples.demo import write_demo_corpus

    root = tmp_path_factory.mktemp("web_corpus")
    write_demo_corpus(root)
    return root


@pytest.fixture(scope="session")
def web_index(web_corpus, tmp_path_factory) -> Path:
    from indexer import add_texts, build_index
    from model import load_encoder

    index = tmp_path_factory.mktemp("web_index")
    encoder = load_encoder("starter", device="cpu")
    build_index(web_corpus / "manifest.csv", index, encoder, progress=False)
    add_texts(index, None, encoder)
    return index


WEB_API_KEY = "web-page-key-0123456789"


def _serve(index: Path | list[str], log: Path, env: dict | None = None):
    """Start `clipsearch serve` on a free port; yield its URL once ready; stop it after.
    `index`: one folder, or several `--index` values (NAME=DIR)."""
    port = _free_port()
    given = [str(index)] if isinstance(index, Path) else index
    flags = [arg for value in given for arg in ("--index", value)]
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", *flags,
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CLIPSEARCH_API_KEY": "", **(env or {})},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"server not ready in time:\n{log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def server_url(web_index, tmp_path_factory):
    yield from _serve(web_index, tmp_path_factory.mktemp("server") / "serve.log")


@pytest.fixture(scope="session")
def keyed_server_url(web_index, tmp_path_factory):
    """The same index served with an API key configured (CLIPSEARCH_API_KEY)."""
    log = tmp_path_factory.mktemp("keyed_server") / "serve.log"
    yield from _serve(web_index, log, {"CLIPSEARCH_API_KEY": WEB_API_KEY})


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (CI does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ],
        )
        yield b
        b.close()


class ConsoleWatch:
    """Collects console errors and uncaught page errors; tests assert there are none."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture(params=[("desktop", 1280, 860), ("mobile", 390, 844)], ids=lambda p: p[0])
def page(request, browser, server_url):
    name, width, height = request.param
    ctx = browser.new_context(viewport={"width": width, "height": height}, base_url=server_url)
    pg = ctx.new_page()
    pg.console_watch = ConsoleWatch(pg)
    pg.layout = name
    yield pg
    ctx.close()


def screenshot(page, view: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{view}-{page.layout}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="session")
def upload_files(tmp_path_factory, web_corpus) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uploads")
    files = {
        name: shutil.copy(web_corpus / "images" / "photos" / f"{name}.jpg", d / f"{name}.jpg")
        for name in ("cat", "coffee")
    }
    (d / "notes.txt").write_text("this is not an image")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    files["text"] = d / "notes.txt"
    files["broken"] = d / "broken.png"
    return {k: Path(v) for k, v in files.items()}
