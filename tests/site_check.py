"""The course's website checked in a real browser: served on 127.0.0.1 with every other request blocked.

For each page (the home page, every notebook page, every other page the build wrote): it loaded
with no failed request and no console error; where it has math, the local MathJax typeset it (no
raw LaTeX delimiters left in its text, no MathJax error) with assistive MathML for screen readers, and
its title (the browser's tab, where nothing typesets math) holds no TeX;
every image has loaded (natural width > 0); every internal link resolves to a page of the site (and
an anchor, to an element of it), and every outside link is a reference of ``docs/references.bib``;
every citation links to the bibliography's entry of the work it names (its first author and year);
and a notebook's page shows its summary and cites its references from the bibliography. Then the
site's offline search is asked each query of ``SEARCHES`` and must rank the right page among its
first three results, with no TeX in the results' titles.
``tests/test_site.py`` runs :func:`check_site` on the built site and on broken copies of it.
"""
from __future__ import annotations

import functools
import http.server
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus, urldefrag, urljoin, urlparse

import browser

#: JavaScript: the page's visible prose (code cells, their outputs, the navigation and the sidebar left out,
#: where a dollar sign can be Python), its images, its links, its citations, its MathJax status and headings.
_PAGE_JS = r"""
() => {
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, .cell_input, .cell_output, nav, .bd-sidebar-primary, '
                         + '.bd-header, .bd-header-article, .bd-footer, dialog, .search-button-field, .onlyprint')
       .forEach(el => el.remove());
  return {
    text: prose.innerText,
    images: Array.from(document.images).map(i => ({src: (i.getAttribute('src') || '').slice(0, 80),
                                                   complete: i.complete, width: i.naturalWidth})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
    citations: Array.from(document.querySelectorAll('.bibtex-citation a[href]'))
                    .map(a => ({href: a.getAttribute('href'), text: a.innerText})),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    has_math: document.querySelectorAll('.math').length,
    mathjax: !!window.MathJax && !!window.MathJax.startup,
    typeset: document.querySelectorAll('mjx-container').length,
    assistive: document.querySelectorAll('mjx-container mjx-assistive-mml').length,
    math_errors: document.querySelectorAll('mjx-merror, merror').length
                 + (document.body.innerText.match(/Math Processing Error/g) || []).length,
    headings: Array.from(document.querySelectorAll('h1, h2')).map(h => h.innerText.replace(/[¶#]/g, '').trim()),
    title: document.title,
  };
}
"""
#: Waits for MathJax 3 to finish typesetting (false when there is no MathJax on the page).
_MATHJAX_DONE_JS = r"""
() => new Promise(resolve => {
  if (!window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise) { resolve(false); return; }
  window.MathJax.startup.promise.then(() => resolve(true), () => resolve(false));
})
"""
#: Waits for Sphinx's search page to finish, then returns its status line and its results' links, best first.
_SEARCH_JS = r"""
async () => {
  for (let i = 0; i < 600; i++) {
    const status = document.querySelector('.search-summary');
    if (status && /finished|did not match/i.test(status.innerText)) {
      const links = Array.from(document.querySelectorAll('#search-results ul.search > li > a'));
      return {status: status.innerText, results: links.map(a => a.getAttribute('href')),
              texts: links.map(a => a.innerText)};
    }
    await new Promise(r => setTimeout(r, 50));
  }
  const status = document.querySelector('.search-summary');
  return {status: status ? status.innerText : 'no search status on the page', results: [], texts: []};
}
"""
#: Raw TeX that typeset math would not leave in a page's text.
RAW_TEX = re.compile(r"\$\$|\$[^$\n]{1,200}\$|\\\(|\\\[|\\(?:frac|mathbb|mathcal|operatorname|sum|int|log)\b")
#: TeX in plain text that MathJax never typesets (a browser tab's title, a search result's title).
TEX_IN_PLAIN_TEXT = re.compile(r"[\\$]")
#: The search check's queries, each with the page that must come among the first ``SEARCH_RANK`` results.
SEARCHES = {"posterior collapse": "notebooks/10_posterior_collapse.html",
            "VampPrior": "notebooks/12_learned_priors.html"}
SEARCH_RANK = 3


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
    """The site's pages: the home page first, then every other HTML page (its assets' folders left out)."""
    folder = Path(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.html"))
    return ["index.html"] + [n for n in names if n != "index.html" and not n.startswith("_")]


def is_notebook_page(page: str) -> bool:
    """Whether a page of the site is a notebook's: ``notebooks/NN_*.html``."""
    return page.startswith("notebooks/") and Path(page).name[:2].isdigit()


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
    if info["has_math"] and (not done or not info["mathjax"]):
        report.problems.append("MathJax did not load")
    if info["math_errors"]:
        report.problems.append(f"{info['math_errors']} MathJax error(s)")
    if info["typeset"] and info["assistive"] < info["typeset"]:
        report.problems.append(f"{info['typeset'] - info['assistive']} of {info['typeset']} formulas without "
                               "assistive MathML")
    raw = RAW_TEX.findall(info["text"])
    if raw:
        report.problems.append(f"raw LaTeX left in the text (math not typeset): {raw[:5]}")
    if TEX_IN_PLAIN_TEXT.search(info["title"]):
        report.problems.append(f"raw TeX in the page's title (the browser's tab): {info['title']!r}")
    for image in info["images"]:
        if not image["complete"] or image["width"] == 0:
            report.problems.append(f"image did not load: {image['src']}")
    for href in info["links"]:
        problem = _check_link(href, page, folder, info["ids"])
        if problem:
            report.problems.append(problem)
    for citation in info["citations"]:
        problem = check_citation(citation["href"], citation["text"], page, folder)
        if problem:
            report.problems.append(problem)
    if is_notebook_page(page):
        if "Summary" not in info["headings"]:
            report.problems.append("no Summary section on a notebook's page")
        if "References" in info["headings"] and not info["citations"]:
            report.problems.append("the References section cites no work of the bibliography")
    return report


def check_citation(href: str, text: str, page: str, folder: Path) -> str | None:
    """What is wrong with a citation link: it must lead to a bibliography entry of the work it names.

    ``text`` is the citation as shown ("Kingma and Welling, 2014"): the entry it points at must be a
    bibliography entry (``role="doc-biblioentry"``) that holds its first author's name and its year.
    """
    target, anchor = urldefrag(urljoin(f"http://site/{page}", href))
    file = Path(folder) / urlparse(target).path.lstrip("/")
    if not anchor or not file.is_file():
        return f"citation {text!r} links to no bibliography entry: {href}"
    entry = re.search(rf'<div class="citation" id="{re.escape(anchor)}" role="doc-biblioentry">(.*?)</div>',
                      file.read_text(encoding="utf-8", errors="replace"), re.S)
    if entry is None:
        return f"citation {text!r} links to {href}, which is no bibliography entry"
    words = re.findall(r"[^\W\d_]+", text)
    year = re.search(r"\d{4}", text)
    plain = re.sub(r"<[^>]+>", "", entry.group(1))
    if not words or words[0] not in plain or (year and year.group() not in plain):
        return f"citation {text!r} links to the entry of another work: {plain.strip()[:100]!r}"
    return None


def check_search(context, origin: str, query: str, expected: str, screenshot: Path | None = None,
                 timeout_s: float = 60) -> PageReport:
    """Ask the site's search page for ``query``, offline; the page ``expected`` must be among its first
    ``SEARCH_RANK`` results (a results page of the docs that quotes a notebook may rank above it)."""
    page = f"search.html?q={quote_plus(query)}"
    report = PageReport(page)
    failed = []
    tab = context.new_page()

    def route(r):
        if r.request.url.startswith(origin + "/"):
            r.continue_()
        else:
            failed.append(f"blocked non-local request {r.request.url}")
            r.abort()

    tab.route("**/*", route)
    tab.on("pageerror", lambda err: failed.append(f"console error: {err}"))
    try:
        tab.goto(f"{origin}/{page}", wait_until="load", timeout=timeout_s * 1000)
        found = tab.evaluate(_SEARCH_JS)
        if screenshot is not None:
            tab.screenshot(path=str(screenshot))
    finally:
        tab.close()
    report.problems += failed
    results = [urldefrag(urljoin(f"{origin}/search.html", href))[0].removeprefix(origin + "/")
               for href in found["results"]]
    report.problems += [f"raw TeX in a search result's title: {text!r}" for text in found["texts"]
                        if TEX_IN_PLAIN_TEXT.search(text)]
    if not results:
        report.problems.append(f"search for {query!r} found nothing ({found['status']})")
    elif expected not in results[:SEARCH_RANK]:
        report.problems.append(f"search for {query!r} does not rank {expected} among its first {SEARCH_RANK} "
                               f"results: {results[:5]}")
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


def check_site(folder: Path, screenshots: Path | None = None, pages: list[str] | None = None,
               searches: dict[str, str] | None = None) -> list[PageReport]:
    """Check every page of the site in ``folder`` (or only ``pages``) and its search (``SEARCHES``, or
    ``searches``; ``{}`` for none); return one report per page and per query.

    With ``screenshots`` (a folder), it saves a notebook's page with the sidebar, ``site_sidebar.png``, and
    the first query's results, ``site_search.png``.
    """
    folder = Path(folder)
    _ids_of.cache_clear()
    searches = SEARCHES if searches is None else searches
    driver = browser.Browser().start()
    try:
        with SiteServer(folder) as server:
            reports = [check_page(driver.context, server.origin, page, folder) for page in (pages or pages_of(folder))]
            for i, (query, expected) in enumerate(searches.items()):
                shot = screenshots / "site_search.png" if screenshots is not None and i == 0 else None
                reports.append(check_search(driver.context, server.origin, query, expected, shot))
            if screenshots is not None:
                shown = [p for p in pages_of(folder) if is_notebook_page(p)]
                page = next((p for p in shown if p.startswith("notebooks/05_")), shown[0] if shown else "index.html")
                tab = driver.context.new_page()
                tab.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.origin) else r.abort())
                tab.goto(f"{server.origin}/{page}")
                tab.evaluate(_MATHJAX_DONE_JS)
                tab.screenshot(path=str(screenshots / "site_sidebar.png"))
                tab.close()
    finally:
        driver.stop()
    return reports
