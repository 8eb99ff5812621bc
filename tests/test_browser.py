"""The built book in a real browser: every page loads without console errors, images and internal links.

Needs a built book (``bash scripts/build_book.sh``), Debian's chromium and chromedriver
(``apt-get install chromium chromium-driver``) and selenium. The book is served from 127.0.0.1, so
the test needs no network. What it tolerates, and why:

- a 404 for ``/favicon.ico``: Chromium asks for it on every origin; the book configures none;
- failures to load resources from *other* origins (MathJax from its CDN): no machine running this
  test is assumed to reach the internet, and a reader's browser fetches them itself. Errors from
  the book's own origin always count.
"""

import functools
import http.server
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest
from conftest import skip_unless_required

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
SCREENSHOT_PAGES = {"notebooks/02_power_law.html", "notebooks/07_sharpness.html"}
TABLE_ONLY_PAGES = {"notebooks/09_claims.html"}  # experiment pages without figures
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
)  # fmt: skip

pytestmark = pytest.mark.slow


def built_pages() -> list[str]:
    """Every HTML page of the book, relative to the site root (theme assets and sources left out)."""
    return sorted(
        str(p.relative_to(SITE)) for p in SITE.rglob("*.html") if p.relative_to(SITE).parts[0] not in ("_static", "_sources")
    )


@pytest.fixture(scope="module")
def site():
    """The base URL of ``_build/html`` served over HTTP on 127.0.0.1 from a background thread."""
    if not (SITE / "index.html").exists():
        skip_unless_required("no built book at _build/html: run bash scripts/build_book.sh first")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium with a fresh profile, recording the console at every level."""
    try:
        from selenium import webdriver
    except ImportError:
        skip_unless_required("needs selenium: pip install selenium")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        skip_unless_required(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    with tempfile.TemporaryDirectory(prefix="milr-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver, base: str) -> list[str]:
    """SEVERE console messages since the last call, less the tolerated ones (see the module docstring)."""
    errors = []
    for entry in driver.get_log("browser"):
        message = entry["message"]
        if entry["level"] != "SEVERE" or "/favicon.ico" in message:
            continue
        url = message.split(" ", 1)[0]
        if url.startswith("http") and not url.startswith(base) and "net::ERR_" in message:
            continue
        errors.append(message)
    return errors


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_page_renders_cleanly(site, browser):
    problems, internal_links = [], set()
    for page in built_pages():
        browser.get(site + page)
        for message in console_errors(browser, site):
            problems.append(f"{page}: console error: {message}")
        images = browser.execute_script(
            "return Array.from(document.querySelectorAll('main img, article img'))"
            ".map(img => [img.currentSrc || img.src, img.complete && img.naturalWidth > 0]);"
        )
        problems += [f"{page}: image did not load: {src}" for src, loaded in images if not loaded]
        if page.startswith("notebooks/") and page not in TABLE_ONLY_PAGES and not images:
            problems.append(f"{page}: no figure on an experiment page")
        hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
        internal_links |= {urldefrag(h).url for h in hrefs if urlparse(h).netloc == urlparse(site).netloc}
        if page in SCREENSHOT_PAGES:  # the whole page, for the record
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            height = browser.execute_script("return document.documentElement.scrollHeight;")
            browser.set_window_size(1400, min(height, 10000))
            browser.save_screenshot(str(SCREENSHOTS / (page.replace("/", "_").removesuffix(".html") + ".png")))
            browser.set_window_size(1400, 1800)
    problems += [f"broken internal link: {url} (HTTP {code})" for url in sorted(internal_links) if (code := status(url)) != 200]
    assert internal_links, "no internal links found: is the site empty?"
    assert not problems, "\n".join(problems)
