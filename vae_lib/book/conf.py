"""Sphinx's configuration of the course's website (``make site``; ``vae_lib.site`` runs ``sphinx-build -c`` here).

The source folder is the one ``vae_lib.site`` stages: the README as ``index.md``, the executed
notebooks under ``notebooks/``, the pages of ``docs/`` and ``benchmarks/results/``, ``figures/`` and
``references.bib``. Nothing a page loads comes from outside the site: MathJax 3 is the copy that the
``sphinx-mathjax-offline`` package ships (its CHTML fonts included), myst-nb's widget scripts (a CDN)
are off, and the theme's own assets are in the build.
"""
import importlib.util
import json
import os
from pathlib import Path

from docutils import nodes

from vae_lib.site import plain_tex
from vae_lib.utils import REPO_ROOT

project = "Variational Autoencoders, a course"
author = "the course's authors"
copyright = "the course's authors; code MIT, prose and figures CC BY 4.0"
root_doc = "index"

extensions = ["myst_nb", "sphinxcontrib.bibtex"]

# -- The notebooks: executed by vae_lib.site (its own cache, threads split between kernels), never here.
nb_execution_mode = "off"
nb_ipywidgets_js = {}                 # the default loads require.js and the widget manager from a CDN
nb_merge_streams = True
nb_render_markdown_format = "myst"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3              # the README's and the docs' links to "page.md#a-heading"
myst_dmath_double_inline = True
numfig = True
math_numfig = True                    # a labelled display equation, $$ ... $$ (label), is numbered
math_eqref_format = "({number})"

# -- Math: a local MathJax 3 (CHTML output, which carries assistive MathML for screen readers).
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None or _mathjax.origin is None:
    raise RuntimeError("the site needs a local MathJax 3: pip install -e '.[site]' (package sphinx-mathjax-offline)")
MATHJAX_STATIC = Path(_mathjax.origin).parent / "static"      # holds mathjax/tex-chtml.js and its fonts
mathjax_path = "mathjax/tex-chtml.js"                            # relative to _static/
mathjax3_config = {
    "options": {"enableAssistiveMml": True},
    "chtml": {"matchFontHeight": True},
    "tex": {"tags": "ams"},
}

# -- The bibliography: the one file the notebooks' reference lists come from.
bibtex_bibfiles = [os.environ.get("VAE_SITE_BIBLIOGRAPHY") or str(REPO_ROOT / "docs" / "references.bib")]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

# -- The book theme: the course in the sidebar, Parts I, II and III as its captions (index.md's toctrees).
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static", str(MATHJAX_STATIC)]
html_css_files = ["course.css"]
html_show_sphinx = False
html_show_sourcelink = False
html_copy_source = True               # the download button offers each page's source: the executed notebook
html_last_updated_fmt = None
html_context = {"default_mode": "light"}   # else the theme logs "invalid theme mode" on a first visit
html_theme_options = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "extra_footer": "",
    "footer_start": ["copyright"],
    "footer_end": [],
}
exclude_patterns = ["_build"]
# The benchmark result pages open with a level-3 heading (they are also pasted into other pages); that
# is a matter of style, not a broken reference, so it alone does not fail the -W build.
suppress_warnings = ["myst.header"]


def _plain_text(node) -> str:
    if isinstance(node, nodes.math):
        return plain_tex(node.astext())
    if isinstance(node, nodes.Text):
        return node.astext()
    return "".join(_plain_text(child) for child in node.children)


def plain_titles(app, doctree) -> None:
    """Headings with math in plain text where MathJax does not reach: the browser's tab and the search results.

    A page whose first heading has math gets that heading in plain text as the document's ``title`` (what the
    ``title`` directive sets), which Sphinx uses for the ``<title>`` and the search results' page titles only:
    notebook 12's tab reads "Learned priors: when N(0, I) is the wrong guess", not ``\\(\\mathcal N(0, I)\\)``.
    The heading, the sidebar and the previous/next links keep the typeset math. Every heading with math is
    also noted for :func:`plain_search_titles`.
    """
    plain = getattr(app.env, "course_plain_titles", None)
    if plain is None:
        plain = app.env.course_plain_titles = {}
    for title in doctree.findall(nodes.title):
        if any(True for _ in title.findall(nodes.math)):
            plain[title.astext()] = _plain_text(title)
    heading = next(iter(doctree.findall(nodes.section)), None)
    if "title" not in doctree and heading is not None and heading[0].astext() in plain:
        doctree["title"] = plain[heading[0].astext()]


def plain_search_titles(app, exception) -> None:
    """The search index's section titles (shown when a query matches a heading) with their math in plain text."""
    index = Path(app.outdir) / "searchindex.js"
    plain = getattr(app.env, "course_plain_titles", {})
    if exception is not None or not plain or not index.is_file():
        return
    text = index.read_text(encoding="utf-8")
    prefix, suffix = "Search.setIndex(", ")"
    data = json.loads(text.removeprefix(prefix).removesuffix(suffix))
    titles = {}
    for title, found in data.get("alltitles", {}).items():
        titles.setdefault(plain.get(title, title), []).extend(found)
    data["alltitles"] = titles
    index.write_text(prefix + json.dumps(data, separators=(",", ":")) + suffix, encoding="utf-8")


def setup(app):
    """MathJax on every page, not only on pages with equations: the sidebar shows notebook titles with math
    (notebook 12's "when N(0, I) is the wrong guess") on every page. Headings with math get plain-text
    titles for the browser's tab and the search results, before Sphinx collects the titles (priority 500)."""
    app.set_html_assets_policy("always")
    app.connect("doctree-read", plain_titles, priority=400)
    app.connect("build-finished", plain_search_titles)
