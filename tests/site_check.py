"""The course's website checked in a real browser: served on 127.0.0.1 with every other request blocked.

For each page (the home page and every notebook page): it loaded with no failed request and no
console error; its math was typeset by the local MathJax (no raw LaTeX delimiters left in its text,
no MathJax error); every image has loaded (natural width > 0); every internal link resolves to a
page of the site (and an anchor, to an element of it), and every outside link is a reference of
``docs/references.bib``; and a notebook's page shows its summary.
``tests/test_site.py`` runs :func:`check_site` on the built site and on broken copies of it.
"""
from __future__ import annotations

import functools
import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import browser

#: JavaScript: the page's visible prose (code and outputs of code cells left out, where a dollar sign
#: can be Python), its images, its links, its MathJax status and its headings.
_PAGE_JS = r"""
() => {
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, .jp-CodeCell .jp-InputArea, .jp-OutputArea, nav.course, .MathJax_Preview')
       .forEach(el => el.remove());
  return {
    text: prose.innerText,
    images: Array.from(document.images).map(i => ({src: (i.getAttribute('src') || '').slice(0, 80),
                                                   complete: i.complete, width: i.naturalWidth})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    mathjax: !!window.MathJax && !!window.MathJax.Hub,
    typeset: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG, mjx-container').length,
    math_errors: document.querySelectorAll('.MathJax_Error, merror').length
                 + (document.body.innerText.match(/Math Processing Error/g) || []).length,
    headings: Array.from(document.querySelectorAll('h1, h2')).map(h => h.innerText.replace(/¶/g, '').trim()),
  };
}
"""
_MATHJAX_DONE_JS = r"""
() => new Promise(resolve => {
  if (!window.MathJax || !window.MathJax.Hub) { resolve(false); return; }
  window.MathJax.Hub.Queue(() => resolve(true));
})
"""
#: Raw TeX that typeset math would not leave in a page's text.
RAW_TEX = re.compile(r"\$\$|\$[^$\n]{1,200}\$|\\\(|\\\[|\\(?:frac|mathbb|mathcal|operatorname|sum|int|log)\b")


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    typeset: int = 0


class SiteServer:
    """A plain HTTP server for a folder on 127.0.0.1, on a free port, in a thread."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        handler = functools.partial(_QuietHandler, directory=str(self.folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", browser.free_port()), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "SiteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports what matters itself
        pass


def pages_of(folder: Path) -> list[str]:
    """The site's pages: the home page first, then every other HTML page in alphabetical order."""
    names = sorted(p.name for p in Path(folder).glob("*.html") if p.name != "index.html")
    return ["index.html"] + names


def check_page(context, origin: str, page: str, folder: Path, timeout_s: float = 60) -> PageReport:
    """Open one page with only ``origin`` reachable; return what is wrong with it."""
    report = PageReport(page)
    failed, console = [], []
    tab = context.new_page()

    def route(r):
        if r.request.url.startswith(origin + "/") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            failed.append(f"blocked non-local request {r.request.url}")
            r.abort()

    tab.route("**/*", route)
    tab.on("requestfailed", lambda req: failed.append(f"request failed: {req.url} ({req.failure})")
           if not req.url.startswith(origin + "/favicon") else None)
    tab.on("response", lambda res: failed.append(f"HTTP {res.status} for {res.url}")
           if res.status >= 400 and not res.url.endswith("/favicon.ico") else None)
    tab.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda err: console.append(str(err)))
    try:
        tab.goto(f"{origin}/{page}", wait_until="load", timeout=timeout_s * 1000)
        done = tab.evaluate(_MATHJAX_DONE_JS)
        tab.wait_for_load_state("networkidle", timeout=timeout_s * 1000)
        info = tab.evaluate(_PAGE_JS)
    finally:
        tab.close()
    report.typeset = info["typeset"]
    report.problems += failed
    report.problems += [f"console error: {text}" for text in console if "favicon" not in text]
    if not done or not info["mathjax"]:
        report.problems.append("MathJax did not load")
    if info["math_errors"]:
        report.problems.append(f"{info['math_errors']} MathJax error(s)")
    raw = RAW_TEX.findall(info["text"])
    if raw:
        report.problems.append(f"raw LaTeX left in the text (math not typeset): {raw[:5]}")
    for image in info["images"]:
        if not image["complete"] or image["width"] == 0:
            report.problems.append(f"image did not load: {image['src']}")
    for href in info["links"]:
        problem = _check_link(href, page, folder, info["ids"])
        if problem:
            report.problems.append(problem)
    if page[:2].isdigit() and "Summary" not in info["headings"]:
        report.problems.append("no Summary section on a notebook's page")
    return report


@functools.lru_cache(maxsize=None)
def _ids_of(path: Path) -> frozenset:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))


#: The course's bibliography: the one kind of page outside the site that a page may link to.
REFERENCES = Path(__file__).resolve().parents[1] / "docs" / "references.bib"


@functools.lru_cache(maxsize=None)
def _bibliography() -> str:
    return REFERENCES.read_text(encoding="utf-8") if REFERENCES.is_file() else ""


def is_reference(href: str) -> bool:
    """Whether an outside link points at a work of ``docs/references.bib`` (its arXiv id, DOI or URL)."""
    if not href.startswith(("https://", "http://")):
        return False
    bib = _bibliography()
    arxiv = re.match(r"https?://arxiv\.org/abs/([^v?#]+)", href)
    if arxiv:
        return arxiv.group(1) in bib
    doi = re.match(r"https?://(?:dx\.)?doi\.org/(.+)", href)
    if doi:
        return doi.group(1).lower() in bib.lower()
    return href in bib


def _check_link(href: str, page: str, folder: Path, ids_here: list[str]) -> str | None:
    if re.match(r"^[a-z]+:", href) and not href.startswith(("http://127.0.0.1", "file:")):
        if href.startswith(("mailto:", "data:")) or is_reference(href):
            return None      # a link is not a request: a reader may follow a reference, the page loads nothing
        return f"link leaves the site and is no reference of docs/references.bib: {href}"
    target, anchor = urldefrag(urljoin(f"http://site/{page}", href))
    path = urlparse(target).path.lstrip("/")
    if not path:
        return f"link to nowhere: {href}"
    file = Path(folder) / path
    if not file.is_file():
        return f"broken link {href!r}: {path} is not in the site"
    if anchor:
        ids = set(ids_here) if path == page else _ids_of(file)
        if anchor not in ids:
            return f"broken link {href!r}: no element #{anchor} in {path}"
    return None


def check_site(folder: Path, screenshot: Path | None = None, pages: list[str] | None = None) -> list[PageReport]:
    """Check every page of the site in ``folder`` (or only ``pages``); return one report per page."""
    folder = Path(folder)
    _ids_of.cache_clear()
    driver = browser.Browser().start()
    try:
        with SiteServer(folder) as server:
            reports = [check_page(driver.context, server.origin, page, folder) for page in (pages or pages_of(folder))]
            if screenshot is not None:
                tab = driver.context.new_page()
                tab.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.origin) else r.abort())
                tab.goto(f"{server.origin}/05_latent_space.html")
                tab.evaluate(_MATHJAX_DONE_JS)
                tab.screenshot(path=str(screenshot))
                tab.close()
    finally:
        driver.stop()
    return reports
