"""clip-retrieval's web front (the static build inside the PyPI clip-retrieval 2.45.0 wheel,
served by its own Flask code from its own venv) searching a running clipsearch, in Chromium:
a query typed into its search bar comes back as our images, loaded from our server."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.utils.clip_retrieval_env import pytest_cache_env

from .conftest import _free_port, _serve

pytestmark = pytest.mark.slow

QUERY = "a cup of coffee"


@pytest.fixture(scope="session")
def cr_env(request):
    return pytest_cache_env(request.config)


@pytest.fixture(scope="module")
def back_url(web_index, tmp_path_factory):
    """clipsearch over the demo corpus, answering the front's cross-origin requests."""
    log = tmp_path_factory.mktemp("cr_back") / "serve.log"
    yield from _serve(web_index, log, {"CLIPSEARCH_CORS_ORIGINS": "*"})


@pytest.fixture(scope="module")
def front_url(cr_env, back_url, tmp_path_factory):
    """`clip-retrieval front --default_backend BACK` on a free port (its launcher's
    front_on_port: clip_front's own app, which hard-codes port 1235)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("cr_front") / "front.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cr_env.cli("front_on_port", str(port), "--default_backend", back_url),
            env=cr_env.environ(), stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # importing clip_retrieval takes a while
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"clip-retrieval front exited:\n{log.read_text()}"
            try:
                if httpx.get(url + "/config.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"clip-retrieval front not up in time:\n{log.read_text()}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_front_searches_clipsearch_and_shows_its_images(browser, front_url, back_url, tmp_path):
    cfg = httpx.get(front_url + "/config.json").json()
    assert cfg["defaultBackend"] == back_url
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    failed: list[str] = []
    page.on(
        "response",
        lambda r: r.url.startswith(back_url) and r.status >= 400 and failed.append(
            f"{r.status} {r.request.method} {r.url}"),
    )  # fmt: skip
    try:
        page.goto(front_url + "/")
        # the front asks /indices-list first and picks our default index
        page.wait_for_function(
            "() => document.querySelector('clip-front')?.indices?.length > 0", timeout=60_000
        )
        bar = page.locator("clip-front #searchBar")
        bar.fill(QUERY)
        with page.expect_response(lambda r: r.url == back_url + "/knn-service", timeout=60_000):
            bar.press("Enter")
        pics = page.locator("clip-front img.pic")
        pics.first.wait_for(timeout=60_000)
        page.wait_for_function(
            """() => { const f = document.querySelector('clip-front');
                       const imgs = [...f.shadowRoot.querySelectorAll('img.pic')];
                       return imgs.length > 0 && imgs.every(i => i.complete); }""",
            timeout=60_000,
        )
        shown = pics.evaluate_all("els => els.map(e => [e.src, e.naturalWidth, e.title])")
        page.screenshot(path=str(tmp_path / "clip-retrieval-front.png"), full_page=True)
    finally:
        ctx.close()
    assert failed == []
    assert len(shown) >= 5
    assert all(w > 0 for _, w, _ in shown), shown  # every image decoded
    assert all(src.startswith(back_url + "/images/") for src, _, _ in shown), shown
    # the first image is our best hit for the same text (the front deduplicates by default)
    hits = httpx.post(back_url + "/search", json={"text": QUERY, "k": 5, "dedup": 0.94}).json()
    assert shown[0][0] == back_url + hits["hits"][0]["url"]
    assert "coffee" in hits["hits"][0]["path"]
    assert (tmp_path / "clip-retrieval-front.png").stat().st_size > 10_000
