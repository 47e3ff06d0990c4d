"""A real index over the sample photos, built once per session with the real indexer and the
starter model, and TestClients over it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

CAPTIONS = [
    "a cat",
    "a cup of coffee",
    "a rocket launch",
    "an astronaut in a space suit",
    "a man with a camera",
]


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    """The model and index load in the background; wait for /readyz (or the load error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.app.state
        if state.engine is not None:
            return
        if state.load_error:
            raise RuntimeError(state.load_error)
        time.sleep(0.05)
    raise TimeoutError("service did not become ready")


def wait_load_error(client: TestClient, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.app.state.load_error:
            return client.app.state.load_error
        time.sleep(0.05)
    raise TimeoutError("no load error reported")


@pytest.fixture(scope="session")
def photo_index(tmp_path_factory, photos_dir, starter_encoder) -> Path:
    """Index of the five sample photos, with the captions above as its text corpus."""
    from indexer import add_texts, build_index

    index = tmp_path_factory.mktemp("app") / "index"
    build_index(photos_dir, index, starter_encoder, progress=False)
    add_texts(index, CAPTIONS, starter_encoder)
    return index


@pytest.fixture(scope="session")
def two_version_index(tmp_path_factory, photos_dir, starter_encoder) -> tuple[Path, str, str]:
    """One index directory holding two versions over different photo sets (both contain cat)."""
    from indexer import build_index, live_version

    root = tmp_path_factory.mktemp("reload")
    corpora = {"a": ["cat", "coffee", "rocket"], "b": ["cat", "astronaut", "camera"]}
    index = root / "index"
    ids = []
    for name, photos in corpora.items():
        d = root / f"corpus_{name}"
        d.mkdir()
        for p in photos:
            shutil.copy(photos_dir / f"{p}.jpg", d / f"{p}.jpg")
        build_index(d, index, starter_encoder, progress=False)
        ids.append(live_version(index))
    return index, ids[0], ids[1]


def make_client(index: Path, encoder, **settings) -> TestClient:
    app = create_app(Settings(index=index, **settings), encoder=encoder)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(photo_index, starter_encoder):
    with make_client(photo_index, starter_encoder, max_body_bytes=2 * 1024 * 1024) as c:
        wait_ready(c)
        yield c
