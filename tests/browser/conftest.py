"""Headless Chromium through Playwright against pytest-django's live server; a screenshot on every failure."""

import os
import re
import shutil
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django would otherwise refuse the test's own queries.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("DOCKET_CHROMIUM", "/usr/bin/chromium")
# Nothing may load from the network: no updates, no sync, no phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Chromium is not installed at {CHROMIUM}: run `make chromium` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, request, live_server):
    """Open pages in fresh browser contexts (one per reviewer); on failure each one is saved as a screenshot."""
    contexts = []

    def open_page(viewport=None):
        context = browser.new_context(viewport=viewport or {"width": 1400, "height": 900}, base_url=live_server.url)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.errors = []
        page.external_requests = []

        def refuse(route):
            page.external_requests.append(route.request.url)
            route.abort()

        # Refuse anything that is not the live server: the pages must work with no network at all.
        context.route(re.compile(r"^(?!" + re.escape(live_server.url) + r").*"), refuse)
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        contexts.append(context)
        return page

    yield open_page
    failed = any(
        getattr(request.node, f"report_{when}", None) and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    for index, context in enumerate(contexts):
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for page_index, page in enumerate(context.pages):
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
                page.screenshot(path=ARTIFACTS / f"{name}-{index}-{page_index}.png", full_page=True)
        context.close()


def log_in(page, username: str, password: str) -> None:
    """Log in with the keyboard only: type, tab, type, Enter."""
    page.goto("/accounts/login/")
    page.focus("#id_username")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def wait_until_answerable(page) -> None:
    """Wait until the labeling page takes an answer for the document on screen: painted, and on screen long
    enough that a key press is meant for it (static/docket/labeling.js refuses earlier ones)."""
    page.wait_for_selector("#workspace[data-ready=true]", state="attached")
