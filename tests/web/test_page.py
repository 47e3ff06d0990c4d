"""The web page in a real browser: search by text, by image, more-like-this, details, classify,
errors. Every test asserts the browser logged no console errors."""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import screenshot

pytestmark = pytest.mark.slow


def first_path(page) -> str:
    return page.locator("#grid .card .path").first.get_attribute("title")


def wait_for_thumbnails(page) -> None:
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )


def test_home_shows_model_and_index(page):
    page.goto("/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model')")
    status = page.locator("#status").inner_text()
    assert re.search(r"\b\d{2,} images", status) and "starter" in status
    screenshot(page, "home")
    assert page.console_watch.errors == []


def test_text_search_shows_the_expected_first_image(page):
    page.goto("/")
    page.fill("#query", "a cup of coffee")
    page.press("#query", "Enter")
    page.wait_for_selector("#grid .card")
    assert first_path(page).endswith("coffee.jpg")
    assert page.locator("#grid .card").count() == 24  # the page asks for k=24
    wait_for_thumbnails(page)  # every thumbnail really loads (naturalWidth > 0)
    screenshot(page, "text-search")
    assert page.console_watch.errors == []


def test_image_upload_finds_itself_and_captions(page, upload_files):
    page.goto("/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model')")
    page.set_input_files("#file", str(upload_files["cat"]))
    page.wait_for_selector("#grid .card")
    assert first_path(page).endswith("cat.jpg")
    score = float(page.locator("#grid .card .score").first.inner_text())
    assert score > 0.99
    page.wait_for_selector("#captions li .score")
    assert "cat" in page.locator("#captions li").first.inner_text()
    wait_for_thumbnails(page)
    screenshot(page, "image-search")
    assert page.console_watch.errors == []


def test_details_and_more_like_this(page):
    page.goto("/")
    page.fill("#query", "a rocket")
    page.press("#query", "Enter")
    page.wait_for_selector("#grid .card")
    page.locator("#grid .card").first.focus()
    page.keyboard.press("Enter")  # keyboard opens the details view
    dialog = page.locator("#details")
    dialog.wait_for(state="visible")
    assert re.search(r"\d+ × \d+ px", dialog.inner_text())
    assert "rocket" in page.locator("#details-title").inner_text()
    page.wait_for_function("document.getElementById('details-image').naturalWidth > 0")
    screenshot(page, "details")
    opened = first_path(page)
    page.click("#details-more")
    page.wait_for_function(
        "document.getElementById('results-title').textContent.startsWith('More')"
    )
    assert not dialog.is_visible()
    # the image itself is left out (exclude_self); the grid is still full
    paths = [p.get_attribute("title") for p in page.locator("#grid .card .path").all()]
    assert opened.endswith("rocket.jpg") and opened not in paths and len(paths) == 24
    assert page.console_watch.errors == []


def test_classify_panel_shows_probability_bars(page, upload_files):
    page.goto("/")
    page.set_input_files("#classify-file", str(upload_files["cat"]))
    page.fill("#labels", "a cat, a dog, a cup of coffee, a rocket")
    page.click("#classify-form button")
    page.wait_for_selector("#bars li")
    first = page.locator("#bars li").first.inner_text()
    assert first.startswith("a cat")
    assert page.locator("#bars li").count() == 4
    screenshot(page, "classify")
    assert page.console_watch.errors == []


def test_non_image_upload_gives_a_clear_message(page, upload_files):
    page.goto("/")
    page.set_input_files("#file", str(upload_files["text"]))
    msg = page.locator("#message")
    msg.wait_for(state="visible")
    assert "not an image" in msg.inner_text()
    assert page.console_watch.errors == []


def test_corrupt_image_shows_the_server_error(page, upload_files):
    page.goto("/")
    page.set_input_files("#classify-file", str(upload_files["broken"]))
    page.click("#classify-form button")
    msg = page.locator("#message")
    msg.wait_for(state="visible")
    assert "image" in msg.inner_text().lower()
    screenshot(page, "error")
    # the only console line allowed is Chromium's own note about the 4xx answer we asked for
    unexpected = [e for e in page.console_watch.errors if not re.search(r"status of 4(15|22)", e)]
    assert unexpected == []


def test_empty_query_is_explained_not_sent(page):
    page.goto("/")
    page.press("#query", "Enter")
    assert "Type what you are looking for" in page.locator("#message").inner_text()
    assert page.locator("#grid .card").count() == 0
    assert page.console_watch.errors == []
