"""The documentation site, opened in a real browser.

Builds the site strictly (or reuses the one named by ``ICL_INTERP_SITE``, which ``.ci/run`` has
just built), serves it on 127.0.0.1 and opens every page in headless Chromium (the Debian
``chromium`` and ``chromium-driver`` packages, which ``.ci/install`` installs): every page loads
without a browser error, every image decodes, every internal link and anchor resolves, the search
box finds "SimAOU", and screenshots of the home page and the ICL-vs-GD page are not blank (saved
under ``.browser-test/``, git-ignored). Skips where Chromium is missing, except under CI.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / ".browser-test"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.browser


def _missing_browser() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return None
    message = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    return message


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """The built site: ``$ICL_INTERP_SITE`` if set, else a strict build into a temporary folder."""
    given = os.environ.get("ICL_INTERP_SITE")
    if given:
        folder = (ROOT / given).resolve()
        assert (folder / "index.html").exists(), f"ICL_INTERP_SITE={given} holds no built site"
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="icl_interp_site_"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    build = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--quiet",
        "--site-dir",
        str(folder),
    ]
    result = subprocess.run(build, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="icl_interp_chromium_")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1024",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pages(site: Path) -> list[str]:
    return sorted(
        path.relative_to(site).as_posix()
        for path in site.rglob("*.html")
        if path.name != "404.html"
    )


PAGE_STATE = """
return {
  ready: document.readyState,
  title: document.title,
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
      ok: i.complete && i.naturalWidth > 0})),
};
"""


def test_every_page_loads_with_its_images_links_and_anchors(
    site: Path, base_url: str, browser: object
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver: object = browser
    pages = _pages(site)
    assert len(pages) >= 20, pages
    ids: dict[str, set[str]] = {}
    links: list[tuple[str, str]] = []
    problems: list[str] = []
    for page in pages:
        driver.get(base_url + page)  # type: ignore[attr-defined]
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        state = driver.execute_script(PAGE_STATE)  # type: ignore[attr-defined]
        ids[page] = set(state["ids"])
        problems += [
            f"{page}: broken image {image['src']}" for image in state["images"] if not image["ok"]
        ]
        links += [(page, href) for href in state["links"]]
        for entry in driver.get_log("browser"):  # type: ignore[attr-defined]
            if entry["level"] == "SEVERE":
                problems.append(f"{page}: browser error: {entry['message']}")
    for page, href in links:
        url, fragment = urldefrag(href)
        if not url.startswith(base_url):
            continue
        target = unquote(urlparse(url).path).lstrip("/") or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if not (site / target).exists():
            problems.append(f"{page}: broken link {href}")
        elif fragment and target in ids and unquote(fragment) not in ids[target]:
            problems.append(f"{page}: link to a missing anchor {href}")
    assert not problems, "\n".join(problems)
    print(f"{len(pages)} pages, {len(links)} links checked")


def test_search_finds_simaou(base_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver: object = browser
    driver.get(base_url + "index.html")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 30)
    wait.until(
        ready.element_to_be_clickable((By.CSS_SELECTOR, "label.md-search__icon, .md-search__input"))
    )
    driver.execute_script("document.querySelector('#__search').checked = true;")  # type: ignore[attr-defined]
    box = wait.until(
        ready.visibility_of_element_located((By.CSS_SELECTOR, "input.md-search__input"))
    )
    box.send_keys("SimAOU")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".md-search-result__item")) > 0)
    hits = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")  # type: ignore[attr-defined]
    assert hits and any(hit.get_attribute("href") for hit in hits)


@pytest.mark.parametrize(
    "page, name", [("index.html", "home.png"), ("icl_vs_gd.html", "icl_vs_gd.png")]
)
def test_screenshot_is_not_blank(base_url: str, browser: object, page: str, name: str) -> None:
    from PIL import Image

    driver: object = browser
    driver.get(base_url + page)  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / name
    assert driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    image = Image.open(path).convert("L")
    histogram = image.histogram()
    most_common = max(histogram) / sum(histogram)
    assert image.size[0] >= 800 and most_common < 0.97, (
        f"{path} looks blank: {most_common:.1%} of its pixels share one grey level"
    )
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 16, (
        f"{path} has too few shades"
    )
    print(f"screenshot: {path.relative_to(ROOT)}")
