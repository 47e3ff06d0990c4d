"""The page on a server of several indexes (`serve --index demo=DIR --index photos=DIR2`): an
index selector, and every search, thumbnail and image then from the chosen index. A server of
one index shows no selector (tests/web/test_page.py's server)."""

from __future__ import annotations

import pytest

from tests.web.conftest import _serve, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos_only_index(web_corpus, tmp_path_factory):
    """Only the demo corpus's photos (no rendered shapes), indexed on their own."""
    from indexer import build_index
    from model import load_encoder

    index = tmp_path_factory.mktemp("photos_only") / "photos"
    build_index(web_corpus / "images" / "photos", index, load_encoder("starter", device="cpu"),
                progress=False)  # fmt: skip
    return index


@pytest.fixture(scope="module")
def multi_url(web_index, photos_only_index, tmp_path_factory):
    log = tmp_path_factory.mktemp("multi_server") / "serve.log"
    yield from _serve([f"demo={web_index}", f"photos={photos_only_index}"], log)


@pytest.fixture
def multi_page(browser, multi_url):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=multi_url)
    pg = ctx.new_page()
    pg.layout = "desktop"
    errors: list[str] = []
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    ctx.close()


def paths(page) -> list[str]:
    return [p.get_attribute("title") for p in page.locator("#grid .card .path").all()]


def test_the_selector_switches_the_index(multi_page, web_corpus):
    page = multi_page
    page.goto("/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model')")
    picker = page.locator("#index-picker")
    assert picker.is_visible()
    options = page.locator("#index-select option").all_inner_texts()
    assert options == ["demo (default)", "photos"]
    demo_status = page.locator("#status").inner_text()

    page.fill("#query", "a cup of coffee")
    page.press("#query", "Enter")
    page.wait_for_selector("#grid .card")
    assert len(paths(page)) == 24 and paths(page)[0].endswith("coffee.jpg")

    page.select_option("#index-select", "photos")
    page.wait_for_function(f"!document.getElementById('status').textContent.includes("
                           f"{demo_status.split(' · ')[0]!r})")  # fmt: skip
    page.wait_for_function(
        "document.querySelectorAll('#grid .card').length > 0 &&"
        "document.querySelectorAll('#grid .card').length < 24"
    )
    found = paths(page)
    photos = sorted(p.name for p in (web_corpus / "images" / "photos").iterdir())
    assert found[0] == "coffee.jpg" and sorted(found) == photos  # all of that index, no more
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    srcs = page.eval_on_selector_all("#grid img", "imgs => imgs.map(i => i.getAttribute('src'))")
    assert all(s.endswith("?index=photos") for s in srcs)
    screenshot(page, "index-selector")
    assert page.errors == []


def test_one_index_shows_no_selector(page):
    page.goto("/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model')")
    assert not page.locator("#index-picker").is_visible()
