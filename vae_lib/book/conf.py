"""Sphinx's configuration of the course's website (``make site``; ``vae_lib.site`` runs ``sphinx-build -c`` here).

The source folder is the one ``vae_lib.site`` stages: the README as ``index.md``, the executed
notebooks under ``notebooks/``, the pages of ``docs/`` and ``benchmarks/results/``, ``figures/`` and
``references.bib``. Nothing a page loads comes from outside the site: MathJax 3 is the copy that the
``sphinx-mathjax-offline`` package ships (its CHTML fonts included), myst-nb's widget scripts (a CDN)
are off, and the theme's own assets are in the build.
"""
import importlib.util
import os
from pathlib import Path

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


def setup(app):
    """MathJax on every page, not only on pages with equations: the sidebar shows notebook titles with math
    (notebook 12's "when N(0, I) is the wrong guess") on every page."""
    app.set_html_assets_policy("always")
