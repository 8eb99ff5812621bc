"""The built book in a real browser (headless Chromium, 1300 px wide), page by page.

Needs a built book (``bash scripts/build_book.sh``), Debian's chromium and chromedriver
(``apt-get install chromium chromium-driver``) and selenium. The book is served from 127.0.0.1, so
the test needs no network. On every page it checks:

- **loads cleanly**: no console error (but a 404 for ``/favicon.ico``, which Chromium asks every origin
  for, and failures to reach *other* origins, which no machine running this test reaches), every image
  loaded, every internal link answers 200;
- **maths typeset**: MathJax (served from the book's ``_static``) has finished, left no TeX error
  (``mjx-merror``), and no raw TeX is visible in the page's text outside code: no ``\\(``, ``\\)``,
  ``\\[``, ``\\]``, ``$$``, ``$...$`` or ``\\command`` (``\\eta``, ``\\lambda``, ``\\times``...);
- **no horizontal overflow**: the page is no wider than the window
  (``document.documentElement.scrollWidth <= window.innerWidth``), and no element of the article sticks
  out to the right of the article unless it sits inside a box that scrolls or clips horizontally
  (``overflow-x`` auto, scroll or hidden: the theme's table wrappers, code blocks, ``milr.css``'s
  output boxes);

on every experiment chapter (``notebooks/*``, but the table-only ``TABLE_ONLY_PAGES``):

- **a numbered figure**: at least one ``<figure>`` whose caption carries a Sphinx number
  (``.caption-number``, "Fig. N") and whose ``<img>`` has alt text of at least ``MIN_ALT`` characters
  that says something: not empty, not a file name, not a hash (myst-nb ``glue`` + ``{glue:figure}`` with
  ``:alt:``, or a ``{figure}`` directive with ``:alt:``, give exactly this);

and on the landing page (``book/intro.html``): the verdict table ``table.milr-verdicts`` with a header
naming Question, Verdict and the number, at least ``MIN_CLAIMS`` rows, each linking to a chapter, and the
summary figure, numbered, with alt text.
"""

import functools
import http.server
import re
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
SCREENSHOT_PAGES = {"book/intro.html", "notebooks/02_power_law.html", "notebooks/07_sharpness.html"}
TABLE_ONLY_PAGES = {"notebooks/09_claims.html"}  # the claims chapter: tables, no figure
LANDING = "book/intro.html"
WIDTH, HEIGHT = 1300, 1800
MIN_ALT, MIN_CLAIMS = 15, 6
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--window-size={WIDTH},{HEIGHT}",
)  # fmt: skip
RAW_TEX = re.compile(r"\\[()\[\]]|\$\$|\$[^$\s][^$\n]{0,60}\$|\\[A-Za-z]{2,}")
HASHLIKE = re.compile(r"^[0-9a-f]{12,}(\.\w+)?$|^\S+\.(png|svg|jpe?g|gif)$", re.IGNORECASE)

pytestmark = pytest.mark.slow

# Visible text outside code and rendered maths: text nodes whose element is visible and has no ancestor
# that is code, a script, or MathJax's output.
VISIBLE_TEXT_JS = """
const skip = 'pre, code, kbd, samp, script, style, noscript, textarea, .highlight, mjx-container, .MathJax';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const parts = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const el = node.parentElement;
  if (!el || el.closest(skip) || !node.textContent.trim()) continue;
  if (el.checkVisibility && !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
  parts.push(node.textContent);
}
return parts.join(' ');
"""

# Elements of the article that stick out to its right outside any box that scrolls or clips sideways.
OVERFLOW_JS = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const limit = article.getBoundingClientRect().right + 1;
const scrolls = el => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(el).overflowX);
const out = [];
for (const el of article.querySelectorAll('*')) {
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.right <= limit) continue;
  const style = getComputedStyle(el);
  if (style.position === 'fixed' || style.visibility === 'hidden' || style.display === 'none') continue;
  let inside = false;
  for (let up = el.parentElement; up && up !== article; up = up.parentElement) {
    if (scrolls(up)) { inside = true; break; }
  }
  if (inside || el.closest('mjx-assistive-mml')) continue;
  const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined
    ? '.' + String(el.className).trim().split(/\\s+/).join('.') : '');
  out.push(name + ' (right edge ' + Math.round(box.right) + ' > ' + Math.round(limit) + ')');
}
return [document.documentElement.scrollWidth, window.innerWidth, out.slice(0, 5)];
"""

FIGURES_JS = """
return Array.from(document.querySelectorAll('article figure')).map(f => {
  const img = f.querySelector('img');
  const number = f.querySelector('.caption-number');
  return {number: number ? number.textContent.trim() : '', alt: img ? (img.getAttribute('alt') || '') : null,
          src: img ? img.getAttribute('src') : null};
});
"""

VERDICTS_JS = """
const table = document.querySelector('table.milr-verdicts');
if (!table) return null;
const header = Array.from(table.querySelectorAll('thead th')).map(th => th.textContent.trim());
const rows = Array.from(table.querySelectorAll('tbody tr')).map(tr => ({
  cells: Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()),
  links: Array.from(tr.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
}));
return {header: header, rows: rows};
"""


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

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # the browser dropping a connection it no longer needs
            pass

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SITE)))
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
        driver.set_script_timeout(30)
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


def typeset(driver) -> str:
    """Wait for MathJax to finish the page; returns "done", "absent" (no MathJax on the page) or the error."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) { done('absent'); return; }"
        "MathJax.startup.promise.then(() => done('done'), e => done(String(e)));"
    )


def maths_problems(driver, page: str) -> list[str]:
    problems = []
    state = typeset(driver)
    has_maths = driver.execute_script("return document.querySelectorAll('.math, mjx-container').length;")
    if state != "done" and has_maths:
        problems.append(f"{page}: MathJax did not typeset the page ({state})")
    if driver.execute_script("return document.querySelectorAll('mjx-merror').length;"):
        problems.append(f"{page}: MathJax reports a TeX error (mjx-merror)")
    text = driver.execute_script(VISIBLE_TEXT_JS)
    raw = sorted({m.group(0) for m in RAW_TEX.finditer(text)})
    if raw:
        problems.append(f"{page}: raw TeX in the rendered text: {raw[:8]}")
    return problems


def overflow_problems(driver, page: str) -> list[str]:
    scroll_width, inner_width, sticking_out = driver.execute_script(OVERFLOW_JS)
    problems = []
    if scroll_width > inner_width:
        problems.append(f"{page}: the page is {scroll_width} px wide in a {inner_width} px window")
    problems += [f"{page}: wider than the article, outside any scrolling box: {what}" for what in sticking_out]
    return problems


def figure_problems(driver, page: str) -> list[str]:
    figures = driver.execute_script(FIGURES_JS)
    good = [
        f for f in figures
        if f["number"] and f["alt"] is not None and len(f["alt"].strip()) >= MIN_ALT and not HASHLIKE.match(f["alt"].strip())
    ]  # fmt: skip
    if good:
        return []
    seen = "; ".join(f"number {f['number']!r}, alt {f['alt']!r}" for f in figures) or "no <figure> at all"
    return [
        f"{page}: no numbered figure with alt text (a <figure> with a .caption-number 'Fig. N' and an <img> whose alt "
        f"says what it shows, >= {MIN_ALT} characters, not a file name or hash; use glue + {{glue:figure}} with :alt: "
        f"and :name:, or {{figure}} with :alt:): found {seen}"
    ]


def landing_problems(driver) -> list[str]:
    table = driver.execute_script(VERDICTS_JS)
    if table is None:
        return [f"{LANDING}: no verdict table (table.milr-verdicts, from book/_generated/verdicts.md)"]
    problems = []
    header = " ".join(table["header"]).lower()
    for column in ("question", "verdict", "number"):  # one row per question of a claim (claims.py), its number
        if column not in header:
            problems.append(f"{LANDING}: the verdict table has no {column!r} column: {table['header']}")
    if len(table["rows"]) < MIN_CLAIMS:
        problems.append(f"{LANDING}: the verdict table has {len(table['rows'])} rows, expected >= {MIN_CLAIMS}")
    for row in table["rows"]:
        if not any("notebooks/" in link for link in row["links"]):
            problems.append(f"{LANDING}: verdict row without a link to its chapter: {row['cells'][:1]}")
        if any(not cell for cell in row["cells"]):
            problems.append(f"{LANDING}: verdict row with an empty cell: {row['cells']}")
    problems += figure_problems(driver, LANDING)
    return problems


def test_every_page_renders_cleanly(site, browser):
    problems, internal_links, pages = [], set(), built_pages()
    assert LANDING in pages, f"no {LANDING} in the built book"
    for page in pages:
        browser.get(site + page)
        problems += maths_problems(browser, page)
        problems += [f"{page}: console error: {message}" for message in console_errors(browser, site)]
        images = browser.execute_script(
            "return Array.from(document.querySelectorAll('main img, article img'))"
            ".map(img => [img.currentSrc || img.src, img.complete && img.naturalWidth > 0]);"
        )
        problems += [f"{page}: image did not load: {src}" for src, loaded in images if not loaded]
        problems += overflow_problems(browser, page)
        if page.startswith("notebooks/") and page not in TABLE_ONLY_PAGES:
            problems += figure_problems(browser, page)
        if page == LANDING:
            problems += landing_problems(browser)
        hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
        internal_links |= {urldefrag(h).url for h in hrefs if urlparse(h).netloc == urlparse(site).netloc}
        if page in SCREENSHOT_PAGES:  # the whole page, for the record
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            height = browser.execute_script("return document.documentElement.scrollHeight;")
            browser.set_window_size(WIDTH, min(height, 10000))
            browser.save_screenshot(str(SCREENSHOTS / (page.replace("/", "_").removesuffix(".html") + ".png")))
            browser.set_window_size(WIDTH, HEIGHT)
    problems += [f"broken internal link: {url} (HTTP {code})" for url in sorted(internal_links) if (code := status(url)) != 200]
    assert internal_links, "no internal links found: is the site empty?"
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
