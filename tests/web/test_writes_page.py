"""Writes from the page in a real Chromium, against a `--writable` server: add an image by the
add zone (upload with a progress bar), find it by a text search, delete it from its details
dialog, and it is gone. A read-only server shows none of it."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image, ImageOps

from tests.web.conftest import ConsoleWatch, _serve, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def writable_url(web_index, tmp_path_factory):
    """A writable server on a copy of the shared index (its writes must not leak to others)."""
    root = tmp_path_factory.mktemp("writable")
    index = shutil.copytree(web_index, root / "index", symlinks=True)
    yield from _serve(index, root / "serve.log", {"CLIPSEARCH_WRITABLE": "true"})


@pytest.fixture
def new_photo(tmp_path, web_corpus):
    """A cat photo not in the index: mirrored, so new bytes (a new id) that still reads as a cat."""
    path = tmp_path / "mirrored-cat.jpg"
    with Image.open(web_corpus / "images" / "photos" / "cat.jpg") as im:
        ImageOps.mirror(im.convert("RGB")).save(path, quality=92)
    return path


def _page(browser, url):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=url)
    page = ctx.new_page()
    page.console_watch = ConsoleWatch(page)
    page.layout = "desktop"
    page.goto("/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model')")
    return ctx, page


def _search_ids(page, text: str) -> list[str]:
    """Ids of a fresh search's cards (the previous results are cleared first, not mistaken)."""
    page.evaluate("for (const id of ['grid', 'results-title']) document.getElementById(id)"
                  ".replaceChildren()")  # fmt: skip
    page.fill("#query", text)
    page.press("#query", "Enter")
    page.wait_for_function(
        f"document.getElementById('results-title').textContent.includes({text!r})"
    )
    page.wait_for_selector("#grid .card")
    return page.locator("#grid .card").evaluate_all("cs => cs.map(c => c.dataset.id)")


def test_add_find_and_delete_from_the_page(browser, writable_url, new_photo):
    ctx, page = _page(browser, writable_url)
    try:
        assert page.locator("#add").is_visible()
        # record each progress value the bar shows while the upload runs
        page.evaluate(
            "window.progress = []; new MutationObserver(() => window.progress.push("
            "document.getElementById('add-progress').value)).observe("
            "document.getElementById('add-progress'), {attributes: true})"
        )
        page.set_input_files("#add-files", str(new_photo))
        page.wait_for_function("document.getElementById('add-status').dataset.ids")
        assert "Added 1 image" in page.locator("#add-status").inner_text()
        assert page.evaluate("window.progress").count(100) >= 1  # the bar reached 100 %
        assert page.locator("#add-progress").is_hidden()  # and went away when done
        (new_id,) = page.locator("#add-status").get_attribute("data-ids").split(",")

        assert new_id in _search_ids(page, "a cat")  # read your writes
        page.locator(f"#grid .card[data-id='{new_id}']").click()
        page.locator("#details").wait_for(state="visible")
        assert page.locator("#details-title").inner_text().startswith("media:")
        screenshot(page, "details-writable")
        page.once("dialog", lambda d: d.accept())  # "Delete … from the index?"
        page.click("#details-delete")
        page.wait_for_function("document.getElementById('add-status').textContent.includes('Del')")
        assert page.locator(f"#grid .card[data-id='{new_id}']").count() == 0
        assert new_id not in _search_ids(page, "a cat")  # gone for good
        assert page.console_watch.errors == []
    finally:
        ctx.close()


def test_a_read_only_server_shows_no_write_controls(browser, server_url):
    ctx, page = _page(browser, server_url)
    try:
        assert page.locator("#add").is_hidden()
        _search_ids(page, "a cup of coffee")
        page.locator("#grid .card").first.click()
        page.locator("#details").wait_for(state="visible")
        assert page.locator("#details-delete").is_hidden()
        assert page.console_watch.errors == []
    finally:
        ctx.close()
