"""The page with an API key configured, paging, and /docs with no internet: in a real Chromium."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from tests.web.conftest import WEB_API_KEY, ConsoleWatch, screenshot
from tests.web.test_page import wait_for_thumbnails

pytestmark = pytest.mark.slow


def card_count(page) -> int:
    return page.locator("#grid .card").count()


def test_page_with_a_key_asks_for_it_then_searches(browser, keyed_server_url):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=keyed_server_url)
    page = ctx.new_page()
    page.layout = "desktop"
    try:
        page.goto("/")
        page.wait_for_function("document.getElementById('status').textContent.includes('key')")
        assert "API key" in page.locator("#message").inner_text()
        page.fill("#query", "a cup of coffee")
        page.press("#query", "Enter")
        page.wait_for_function("document.getElementById('message').textContent.includes('key')")
        assert card_count(page) == 0

        page.fill("#api-key", WEB_API_KEY)
        page.click("#key-form button")
        page.wait_for_function("document.getElementById('status').textContent.includes('model')")
        page.fill("#query", "a cup of coffee")
        page.press("#query", "Enter")
        page.wait_for_selector("#grid .card")
        assert page.locator("#grid .card .path").first.get_attribute("title").endswith("coffee.jpg")
        wait_for_thumbnails(page)  # fetched with the key too
        assert page.evaluate("sessionStorage.getItem('clipsearch-api-key')") == WEB_API_KEY
        screenshot(page, "api-key")
    finally:
        ctx.close()


def test_wrong_key_is_explained(browser, keyed_server_url):
    ctx = browser.new_context(base_url=keyed_server_url)
    page = ctx.new_page()
    try:
        page.goto("/")
        page.fill("#api-key", "not-the-key")
        page.click("#key-form button")
        page.wait_for_function("document.getElementById('message').textContent.includes('key')")
        assert "not accepted" in page.locator("#message").inner_text()
    finally:
        ctx.close()


def test_more_results_load_on_request(page):
    page.goto("/")
    page.wait_for_function("document.getElementById('status').textContent.includes('model')")
    status = page.locator("#status").inner_text()
    total = int(re.search(r"([\d,]+) images", status)[1].replace(",", ""))
    page.fill("#query", "a photo")
    page.press("#query", "Enter")
    page.wait_for_selector("#grid .card")
    assert total > 24, "the web corpus should span more than one page"
    page.locator("#more").scroll_into_view_if_needed()
    page.wait_for_function(f"document.querySelectorAll('#grid .card').length == {min(48, total)}")
    ids = page.eval_on_selector_all("#grid .card", "cards => cards.map(c => c.dataset.id)")
    assert len(set(ids)) == len(ids)  # the next page, not the first one again
    assert page.console_watch.errors == []


def test_docs_render_with_the_network_blocked(browser, server_url):
    ctx = browser.new_context(base_url=server_url)
    blocked: list[str] = []

    def only_loopback(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_loopback)
    page = ctx.new_page()
    watch = ConsoleWatch(page)
    try:
        page.goto("/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        labels = page.locator(".opblock-summary-path").all_inner_texts()
        assert {"/search", "/classify", "/embed"} <= {x.strip() for x in labels}, labels
        assert blocked == [], blocked  # nothing was even asked of another host
        assert watch.errors == []
    finally:
        ctx.close()
