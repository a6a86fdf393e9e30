"""The course as a static website: ``python -m vae_lib.site`` (``make site``).

Every notebook is executed top to bottom in a fresh kernel, one per CPU core at a time (trained
models come from ``checkpoints/``, so after ``make test`` this is quick), then exported to HTML with
nbconvert's JupyterLab template, extended (``vae_lib/templates/site``) with a bar of links (home,
previous, next, contents). The README becomes the home page. Everything a page loads is served from
the site itself: MathJax from the ``jupyter-server-mathjax`` package, figures embedded or copied; no
page asks a CDN for anything.

Sliders cannot move without a kernel, so each explorer is replaced by its first picture and one line
saying that it is interactive in JupyterLab (``make lab``); progress bars are left out. The site goes
to ``site/`` at the repository root (gitignored). Figures the notebooks save while the site is built
go to a temporary folder, so ``figures/`` is not touched.
"""
from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from .course import notebook_paths
from .utils import REPO_ROOT

SITE_DIR = REPO_ROOT / "site"
TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
#: Results in the repository that the home page links to, each made a page of the site (when present).
RESULT_PAGES = {"docs/results.md": "docs-results.html", "docs/performance.md": "docs-performance.html",
                "docs/testing.md": "docs-testing.html", "docs/data.md": "docs-data.html",
                "benchmarks/results/cpu.md": "benchmarks-cpu.html",
                "benchmarks/results/cuda.md": "benchmarks-cuda.html",
                "benchmarks/results/cpu-conv-widths.md": "benchmarks-cpu-conv-widths.html",
                "benchmarks/results/cuda-conv-widths.md": "benchmarks-cuda-conv-widths.html",
                "benchmarks/results/reproduce.md": "benchmarks-reproduce.html",
                "benchmarks/results/reproduce_vamp.md": "benchmarks-reproduce-vamp.html",
                "benchmarks/results/cpu-priors.md": "benchmarks-cpu-priors.html"}
EXPLORER_NOTE = ("Interactive in JupyterLab (<code>make lab</code>): there the controls above redraw this picture. "
                 "Here it shows the picture for their first values{values}.")


def mathjax_folder() -> Path:
    """The local copy of MathJax that the pages load (from the ``jupyter-server-mathjax`` package)."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:
        raise RuntimeError("the site needs a local MathJax: pip install jupyter-server-mathjax "
                           "(it is in the course's test extra: make setup)") from err
    folder = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    if not (folder / "MathJax.js").is_file():
        raise RuntimeError(f"no MathJax.js in {folder}; reinstall jupyter-server-mathjax")
    return folder


def page_name(notebook: Path | str) -> str:
    """The HTML page of a notebook: ``04_training_an_mlp_vae.ipynb`` -> ``04_training_an_mlp_vae.html``."""
    return Path(notebook).with_suffix(".html").name


def title_of(nb) -> str:
    """A notebook's title: its first Markdown heading, without the leading #."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "notebook"


# --------------------------------------------------------------------------- links


def rewrite_links(markdown: str, notebook_names: set[str], from_readme: bool, extra_pages: dict[str, str],
                  base: str = "") -> str:
    """Point a page's Markdown links at the site: notebooks to their pages, the README to the home page.

    ``extra_pages`` maps repository files that get a page of their own (e.g. benchmark results) to it.
    ``base``: the folder of the page's source in the repository (``docs`` for ``docs/results.md``), against
    which its relative links and images are resolved; every page of the site sits in the site's root.
    Links to folders or other repository files, which the site does not hold, keep their text and
    lose the link.
    """
    if base:   # images: figures/ is copied to the site's root
        markdown = re.sub(r"(\!\[[^\]]*\]\()([^)\s]+)\)",
                          lambda m: m.group(1) + os.path.normpath(os.path.join(base, m.group(2))) + ")", markdown)
    def replace(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)                       # an absolute URL (absent from the course) or an anchor
        path, _, anchor = target.partition("#")
        name = Path(path).name
        if name in notebook_names:
            return f"[{text}]({page_name(name)}{'#' + anchor if anchor else ''})"
        if name == "README.md":
            return f"[{text}](index.html)"
        key = path.removeprefix("./") if from_readme else path
        if base and path:
            key = os.path.normpath(os.path.join(base, path))
        if key in extra_pages:
            return f"[{text}]({extra_pages[key]})"
        if key.startswith("figures/"):
            return match.group(0)                       # the figures are copied into the site
        return text

    return re.sub(r"(?<!\!)\[([^\]]*)\]\(([^)\s]+)\)", replace, markdown)


# --------------------------------------------------------------------------- explorers


def _widget_state(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def _descendants(state: dict, model_id: str, seen: set | None = None):
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in state:
        return
    seen.add(model_id)
    yield model_id, state[model_id]
    children = state[model_id].get("state", {}).get("children", [])
    for child in children:
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            yield from _descendants(state, child[len("IPY_MODEL_"):], seen)


def _control_values(models) -> str:
    values = []
    for _, model in models:
        s = model.get("state", {})
        if model.get("model_name", "").endswith(("SliderModel", "DropdownModel")) and s.get("description"):
            if "_options_labels" in s and isinstance(s.get("index"), int):
                value = s["_options_labels"][s["index"]]
            else:
                value = s.get("value")
                value = f"{value:.2f}" if isinstance(value, float) else value
            values.append(f"{html.escape(str(s['description']))} = {html.escape(str(value))}")
    return f" ({', '.join(values)})" if values else ""


def freeze_widgets(nb):
    """Replace every widget output by what it shows without a kernel; return the new notebook.

    An explorer (a widget holding an ipywidgets Output) becomes the Output's pictures and a note that
    it is interactive in JupyterLab; any other widget (a progress bar) is left out. The widget state
    is dropped, so the page loads no widget JavaScript.
    """
    nb = copy.deepcopy(nb)
    state = _widget_state(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW) if output.get("output_type") in ("display_data",
                                                                                              "execute_result") else None
            if view is None:
                outputs.append(output)
                continue
            models = list(_descendants(state, view.get("model_id", "")))
            pictures = [o for _, m in models if m.get("model_name") == "OutputModel"
                        for o in m.get("state", {}).get("outputs", [])]
            if not pictures:
                continue                                # a progress bar: nothing to show without a kernel
            note = EXPLORER_NOTE.format(values=_control_values(models))
            outputs.append({"output_type": "display_data", "metadata": {},
                            "data": {"text/html": f'<p class="course-explorer-note">{note}</p>'}})
            outputs.extend(copy.deepcopy(pictures))
        cell["outputs"] = outputs
    nb.metadata.pop("widgets", None)
    return nb


# --------------------------------------------------------------------------- pictures


def _plain(markdown: str) -> str:
    """Markdown and TeX reduced to plain words for an alternative text."""
    text = re.sub(r"\$+([^$]*)\$+", r"\1", markdown)
    text = re.sub(r"\\(?:mathcal|mathbb|operatorname|text|mathrm|,|;|!)\s*", "", text)
    text = re.sub(r"[*_`{}\\]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _alt_text(nb, index: int) -> str:
    """What a picture of cell ``index`` shows: the interpretation that follows it, or where to read it."""
    following = next((c for c in nb.cells[index + 1:] if c.cell_type == "markdown"), None)
    if following is not None and re.match(r"\s*\*\*What (the|this|these)", following.source):
        words = _plain(following.source.split("\n\n")[0])
        words = re.sub(r"^What (the|this|these) [^.]*\.\s*", "", words)
        sentences = re.findall(r"[^.!?]+[.!?]", words) or [words]
        return ("Figure: " + " ".join(s.strip() for s in sentences[:2]))[:300]
    heading = next((line.lstrip("#").strip() for c in reversed(nb.cells[:index]) if c.cell_type == "markdown"
                    for line in c.source.splitlines() if line.startswith("#")), "this section")
    return f"Figure drawn by the code of the section \u201c{_plain(heading)}\u201d; the text around it says what it shows."


def describe_images(nb):
    """Give every picture a cell draws an alternative text, for screen readers; return the new notebook.

    The text is the first sentences of the interpretation that follows the picture (the course's
    "What the figure shows." paragraphs), else a pointer to its section. Each PNG output becomes an
    HTML image that carries it (nbconvert would otherwise write "No description has been provided").
    """
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output.get("output_type") in ("display_data", "execute_result") and "image/png" in data:
                alt = html.escape(_alt_text(nb, index), quote=True)
                png = data["image/png"].replace("\n", "")
                output["data"] = {"text/html": f'<img class="course-figure" src="data:image/png;base64,{png}" '
                                               f'alt="{alt}">'}
                output["metadata"] = {}
    return nb


# --------------------------------------------------------------------------- building


def default_jobs() -> int:
    """How many notebooks the site build executes at once: one per CPU core, at most four."""
    return max(1, min(os.cpu_count() or 1, 4))


def execute_many(paths: list[Path], timeout: int = 900, jobs: int = 1, log=print, on_done=None) -> dict[str, tuple]:
    """Execute notebooks, ``jobs`` at a time, each in a fresh kernel; return ``{name: (nb, seconds)}``.

    ``on_done(name, nb)``, if given, is called (in a worker thread) as soon as a notebook has run,
    while the others go on.

    With several jobs each kernel gets an equal share of the CPU cores as PyTorch threads (through
    ``OMP_NUM_THREADS``, unless that is already set), so that the kernels do not fight over cores.
    The first notebook that fails stops the others and its error is raised.
    """
    import asyncio

    import nbformat
    from nbclient import NotebookClient

    env = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

    async def one(path: Path, slots: asyncio.Semaphore):
        async with slots:
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            await NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                 resources={"metadata": {"path": str(path.parent)}}).async_execute(env=env)
            seconds = time.perf_counter() - start
            log(f"{path.name:<40}{seconds:7.1f} s")
        if on_done is not None:
            await asyncio.to_thread(on_done, path.name, nb)
        return path.name, (nb, seconds)

    async def run_all():
        slots = asyncio.Semaphore(jobs)
        # The later notebooks run longest; starting them first keeps every job busy until the end.
        tasks = [asyncio.ensure_future(one(p, slots)) for p in sorted(paths, key=lambda p: p.name, reverse=True)]
        try:
            done = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return dict(done)

    results = asyncio.run(run_all())
    return {p.name: results[p.name] for p in paths}


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows one (the site's MathJax is 12 MB), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _exporter():
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="site", extra_template_basedirs=[str(TEMPLATES)])
    exporter.mathjax_url = f"_static/mathjax/MathJax.js?config={MATHJAX_CONFIG}"
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    return exporter


def _markdown_page(markdown: str, title: str):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
    nb.metadata["title"] = title
    return nb


def _write(exporter, nb, out: Path, resources: dict) -> None:
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    out.write_text(body, encoding="utf-8")


def build(out: Path = SITE_DIR, only: list[str] | None = None, timeout: int = 900, log=print,
          jobs: int | None = None) -> Path:
    """Build the site in ``out`` (replacing it) and return the path of its home page.

    ``jobs``: notebooks executed at once (default :func:`default_jobs`)."""
    notebooks = notebook_paths()
    chosen = notebook_paths(only=only) if only else notebooks
    names = {p.name for p in notebooks}
    mathjax = mathjax_folder()
    exporter = _exporter()
    staging = Path(tempfile.mkdtemp(prefix=".site-", dir=out.parent))
    figures_tmp = tempfile.mkdtemp(prefix="site-figures-")
    previous_figures = os.environ.get("VAE_FIGURES_DIR")
    os.environ["VAE_FIGURES_DIR"] = figures_tmp      # the executed notebooks must not touch figures/
    try:
        shutil.copytree(mathjax, staging / "_static" / "mathjax", copy_function=_link_or_copy)
        if (REPO_ROOT / "figures").is_dir():
            shutil.copytree(REPO_ROOT / "figures", staging / "figures")
        extra_pages = {source: page for source, page in RESULT_PAGES.items() if (REPO_ROOT / source).is_file()}
        import nbformat

        titles = {p.name: title_of(nbformat.read(p, as_version=4)) for p in chosen}
        order = [p.name for p in notebooks if p.name in titles]
        toc = [(page_name(name), titles[name]) for name in order]
        export_lock = threading.Lock()

        def export(name: str, nb) -> None:
            """Write one notebook's page, as soon as it has been executed."""
            nb = describe_images(freeze_widgets(nb))
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = rewrite_links(cell.source, names, from_readme=False, extra_pages={})
            nb.metadata["title"] = titles[name]
            i = order.index(name)
            nav = {"home": "index.html", "toc": toc, "current": page_name(name),
                   "prev": toc[i - 1] if i > 0 else None, "next": toc[i + 1] if i + 1 < len(toc) else None}
            with export_lock:
                _write(exporter, nb, staging / page_name(name), {"course": nav, "metadata": {"name": titles[name]}})

        jobs = jobs or default_jobs()
        start = time.perf_counter()
        execute_many(chosen, timeout, jobs, log, on_done=export)
        total = time.perf_counter() - start
        readme = rewrite_links((REPO_ROOT / "README.md").read_text(encoding="utf-8"), names, from_readme=True,
                               extra_pages=extra_pages)
        home_nav = {"home": "index.html", "toc": toc, "current": "index.html", "prev": None,
                    "next": toc[0] if toc else None}
        _write(exporter, _markdown_page(readme, "Variational Autoencoders, a course"), staging / "index.html",
               {"course": home_nav, "metadata": {"name": "Variational Autoencoders, a course"}})
        for source, page in extra_pages.items():
            text = rewrite_links((REPO_ROOT / source).read_text(encoding="utf-8"), names, from_readme=False,
                                 extra_pages=extra_pages, base=str(Path(source).parent))
            _write(exporter, _markdown_page(text, Path(source).name), staging / page,
                   {"course": home_nav | {"current": page}, "metadata": {"name": Path(source).name}})
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if previous_figures is None:
            os.environ.pop("VAE_FIGURES_DIR", None)
        else:
            os.environ["VAE_FIGURES_DIR"] = previous_figures
        shutil.rmtree(figures_tmp, ignore_errors=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log(f"{'all notebooks':<40}{total:7.1f} s ({jobs} at a time); the site is in {out} "
        f"(open {out / 'index.html'})")
    return out / "index.html"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_lib.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="notebook number prefixes to build, e.g. 04 05 (default: all)")
    parser.add_argument("--out", type=Path, default=SITE_DIR, help="the site's folder (default: site/)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"notebooks executed at once (default: one per CPU core, at most 4; here {default_jobs()})")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    build(args.out.resolve(), args.only, args.timeout, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
