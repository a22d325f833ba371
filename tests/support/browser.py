"""What the browser tests (tests/stack/test_browser_*.py) share: Debian's Chromium driven by
Playwright on an offline machine, signing in like a person, and the auditor page's paging."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Offline machine: no background networking, updates or sync (their connections are refused).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The auditor page checks the chain in the background and reloads itself until it has answered.
CHAIN_CHECK_MS = 60_000


@contextmanager
def chromium_page(**options: Any) -> Iterator[Any]:
    """A page of a fresh Chromium (1400x900 unless ``viewport`` says otherwise; downloads
    accepted); a missing Chromium fails the test, never skips it."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(
            **{"viewport": {"width": 1400, "height": 900}, "accept_downloads": True, **options}
        )
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


def sign_in(page, api_url: str, username: str, password: str) -> None:
    """Sign in on whichever auth manager's login page the stack serves (simple or FAB), like a
    person would: both have ``username`` and ``password`` inputs and one submit button."""
    page.goto(f"{api_url}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.locator("button[type=submit], input[type=submit]").first.click()
    page.wait_for_url(f"{api_url}/**")
    expect(page.locator("input[name=password]")).to_have_count(0)  # no longer on the login page


def to_last_page(scope) -> None:
    """The ledger's last page, where the newest records are (the stack's other tests, sharing
    its store, may have filled earlier pages)."""
    expect(scope.locator("#page-position")).to_be_visible()  # the page (or frame) has loaded
    if scope.locator("a#page-last").count():
        scope.locator("a#page-last").click()
    expect(scope.locator("span#page-last")).to_be_visible()  # on the last page: no link onwards
