"""Build the documentation site and look at every page in a headless browser.

    python scripts/check_site.py [--out DIR] [--site DIR] [--browser PATH] [--only PAGE ...]

Builds the site (``mkdocs build --strict`` into a temporary folder; ``--site DIR`` checks an
already built one instead), serves it on 127.0.0.1 (``http.server``, a free port) and opens
each page in headless Chromium, which is driven by Playwright. On each page it checks that

- the math rendered: every ``.arithmatex`` element (what pymdownx.arithmatex makes of
  ``$...$`` and ``$$...$$``) holds KaTeX output, no ``.katex-error`` is shown, and no raw
  ``$$``, ``\\(`` or ``\\[`` is left in the text outside code;
- every request the page makes to the site succeeds (no HTTP 404 for a stylesheet, script,
  font or picture), and none goes anywhere else (the site must read offline);
- every picture loaded (``naturalWidth`` > 0), and the page raised no JavaScript error;
- every link into the site leads to a page that exists (HTTP 200), and to the anchor it
  names;

and saves a screenshot of each page (its first 6000 pixels) into ``--out`` (default
``runs/site-check/``, which git ignores), printing the folder. Exits 1 when anything failed.

Needs the docs extra (``pip install -e ".[docs]"``), Playwright (``pip install playwright``)
and a Chromium: the system's (``apt-get install -y chromium`` on Debian; found as
``chromium``, ``chromium-browser`` or ``google-chrome``, or given with ``--browser``), or
Playwright's own (``playwright install chromium``, where downloads are allowed).
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "runs" / "site-check"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOT_HEIGHT = 6000

# What the page reports about itself once KaTeX has run.
_INSPECT = """() => {
  const math = document.querySelectorAll('.arithmatex');
  let rendered = 0;
  math.forEach(el => { if (el.querySelector('.katex')) rendered += 1; });
  const errors = document.querySelectorAll('.katex-error').length;
  const body = document.querySelector('.md-content') || document.body;
  const clone = body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, .katex').forEach(el => el.remove());
  const text = clone.textContent;
  const raw = [];
  for (const token of ['$$', '\\\\(', '\\\\[']) { if (text.includes(token)) raw.push(token); }
  const dollars = text.match(/\\$[^$\\s][^$]{0,80}\\$/g) || [];
  const images = [...document.images].map(img => ({
    src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
  }));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  return {math: math.length, rendered, errors, raw, dollars: dollars.slice(0, 3), images, links,
          height: document.documentElement.scrollHeight,
          title: document.title};
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def build(site: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's end-of-life banner
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    print("+ " + " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    if result.returncode != 0 or warnings:
        sys.exit(f"check_site: mkdocs build failed or warned:\n{log}")
    print(f"built with 0 warnings into {site}", flush=True)


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages(site: Path) -> list[str]:
    """Every page of the site, as a URL path ("" is the home page)."""
    found = []
    for index in sorted(site.rglob("index.html")):
        relative = index.parent.relative_to(site).as_posix()
        if relative.startswith(("assets", "search")):
            continue
        found.append("" if relative == "." else relative + "/")
    return found


def find_browser(given: str | None) -> str | None:
    """The Chromium to drive: ``--browser``, else the first of `BROWSERS` on PATH, else None
    (Playwright's own)."""
    if given:
        return given
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def _fetch(url: str) -> tuple[int, set[str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode("utf-8", "replace")
            status = response.status
    except urllib.error.HTTPError as error:
        return error.code, set()
    parser = _Ids()
    if "html" in body[:1000].lower():
        parser.feed(body)
    return status, parser.ids


def check_link(url: str) -> str | None:
    """Why a link into the site is broken, or None."""
    target, _, fragment = url.partition("#")
    status, ids = _fetch(target)
    if status != 200:
        return f"HTTP {status}"
    fragment = urllib.parse.unquote(fragment)
    if fragment and ids and fragment not in ids:
        return f"no anchor #{fragment}"
    return None


def check_page(page: Any, base: str, path: str, shots: Path) -> tuple[list[str], dict[str, Any]]:
    """Open ``base + path``, inspect it and screenshot it; the problems found."""
    problems: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    external: list[str] = []

    def on_response(response: Any) -> None:
        if response.url.startswith(base) and response.status >= 400:
            failed.append(f"HTTP {response.status} {response.url[len(base) - 1 :]}")

    def on_route(route: Any) -> None:
        url = route.request.url
        if url.startswith(base) or url.startswith("data:"):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    page.on("response", on_response)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/*", on_route)
    page.goto(base + path, wait_until="networkidle")
    try:  # KaTeX renders after the page loads
        page.wait_for_function(
            "() => [...document.querySelectorAll('.arithmatex')]"
            ".every(el => el.querySelector('.katex, .katex-error'))",
            timeout=15000,
        )
    except Exception:  # reported below as unrendered math
        pass
    info = page.evaluate(_INSPECT)
    if info["rendered"] < info["math"]:
        problems.append(f"math not rendered: {info['math'] - info['rendered']} of {info['math']}")
    if info["errors"]:
        problems.append(f"{info['errors']} KaTeX errors (.katex-error)")
    if info["raw"]:
        problems.append(f"raw TeX delimiters left in the text: {info['raw']}")
    if info["dollars"]:
        problems.append(f"raw $...$ left in the text: {info['dollars']}")
    problems += [f"missing image {img['src']}" for img in info["images"] if not img["ok"]]
    problems += failed
    problems += [f"JavaScript error: {error}" for error in errors]
    problems += [f"request outside the site: {url}" for url in external]
    name = (path.strip("/").replace("/", "--") or "index") + ".png"
    height = min(int(info["height"]), SCREENSHOT_HEIGHT)
    page.screenshot(
        path=str(shots / name),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1280, "height": height},
    )
    info["screenshot"] = name
    return problems, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="screenshot folder")
    parser.add_argument("--site", type=Path, help="check this built site instead of building")
    parser.add_argument("--browser", help="path of a Chromium (default: found on PATH)")
    parser.add_argument("--only", nargs="+", metavar="PAGE", help='pages, e.g. "concepts/"')
    args = parser.parse_args(argv)
    try:  # imported by name: Playwright is not a dependency of the package or its extras
        sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    except ImportError:
        sys.exit("check_site: needs Playwright: pip install playwright")

    with tempfile.TemporaryDirectory(prefix="adamflow-site-") as scratch:
        site = args.site
        if site is None:
            site = Path(scratch) / "site"
            build(site)
        server, base = serve(site)
        args.out.mkdir(parents=True, exist_ok=True)
        for old in args.out.glob("*.png"):
            old.unlink()
        targets = args.only or pages(site)
        browser_path = find_browser(args.browser)
        print(
            f"checking {len(targets)} pages at {base} with {browser_path or 'Playwright Chromium'}"
        )
        failures = 0
        links: dict[str, str] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for path in targets:
                page = context.new_page()
                problems, info = check_page(page, base, path, args.out)
                page.close()
                for link in info["links"]:
                    if link.startswith(base):
                        links.setdefault(link, path or "/")
                status = "ok  " if not problems else "FAIL"
                print(
                    f"{status} /{path}  math {info['rendered']}/{info['math']}, "
                    f"images {len(info['images'])}, {info['screenshot']}"
                )
                for problem in problems:
                    print(f"       {problem}")
                failures += bool(problems)
            browser.close()
        broken = [(link, page, why) for link, page in links.items() if (why := check_link(link))]
        for link, page, why in broken:
            print(f"FAIL broken link on /{page}: {link[len(base) - 1 :]} ({why})")
        server.shutdown()
    print(
        f"{len(targets)} pages, {failures} with problems, {len(links)} internal links checked, "
        f"{len(broken)} broken"
    )
    print(f"screenshots: {args.out}")
    return 1 if failures or broken else 0


if __name__ == "__main__":
    sys.exit(main())
