"""The course as a book: ``python -m vae_lib.site`` (``make site``) stages the course, then Sphinx builds it.

Sphinx with MyST-NB, the book theme and sphinxcontrib-bibtex makes the website (its configuration:
``vae_lib/book/conf.py``): the sidebar with Parts I, II and III, offline search, the bibliography
from ``docs/references.bib``, numbered cross-references, a download button per notebook, and
``-W``, so a warning (a broken reference) fails the build. This module holds only the course's own
steps before that build:

* **an execution cache** (``outputs/site-cache/<data set>/``, one folder per data set so that the
  MNIST rehearsal keeps the Fashion-MNIST pages): each notebook is stored with its key, a hash of its
  code cells, the library's code (every module of ``vae_lib``: the checkpoints' fingerprint and what
  ``show_source`` prints) and the data set. ``make test`` (and ``make notebooks``, ``make
  rehearsal``) fill it as nbval runs the notebooks (the pytest plugin :mod:`vae_lib.site_capture`),
  so after ``make test`` no notebook is executed here. jupyter-cache, myst-nb's own, keys on a
  notebook's code alone and would keep a stale page after a change in ``vae_lib``;
* **executing** the notebooks the cache lacks (never run, or whose key changed: one edited notebook
  executes that notebook alone), each in a fresh kernel, ``jobs`` at a time with the CPU threads
  split between the kernels, reusing ``checkpoints/`` (after ``make test`` no model is trained again);
* **freezing** each slider explorer to its first picture, with a note that it is interactive in
  JupyterLab (no widget JavaScript), and leaving progress bars out;
* **alternative text** for every picture, from the interpretation that follows it;
* **staging** the sources: the README as the home page with the table of contents (every
  ``notebooks/NN_*.ipynb``, in Parts by number), solutions collapsed, "section N" in the prose made
  a cross-reference, each reference list's works cited from the bibliography, and links to files
  the site does not hold reduced to their text.

The site goes to ``site/`` (gitignored), replaced only when the build succeeded. Figures the
notebooks save while they run go to a temporary folder, so ``figures/`` is not touched.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .course import notebook_paths
from .student import is_solution
from .utils import REPO_ROOT

SITE_DIR = REPO_ROOT / "site"
#: Executed notebooks, each with the key it was executed under (gitignored, like all of outputs/).
CACHE_DIR = REPO_ROOT / "outputs" / "site-cache"
#: Sphinx's configuration and the course's stylesheet.
BOOK_DIR = Path(__file__).resolve().parent / "book"
LIBRARY_DIR = Path(__file__).resolve().parent
BIBLIOGRAPHY = REPO_ROOT / "docs" / "references.bib"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: The sidebar's captions: a notebook belongs to the last Part whose first number is not above its own.
PARTS = [(1, "Part I: the textbook VAE"), (8, "Part II: VAEs in practice"), (12, "Part III: modern VAEs")]
#: Markdown pages of the repository that become pages of the site (globs), each group under its caption.
PAGES = {"More": ["docs/*.md", "CONTRIBUTING.md"], "Benchmark results": ["benchmarks/results/*.md"]}
#: A cell running longer than this is named in the log while the build goes on (seconds).
SLOW_CELL_S = 240
#: A kernel that used no CPU for this long while its cell runs is taken to have never started the cell.
STALL_S = 90
#: How often the build looks at its kernels (seconds).
WATCH_S = 10
EXPLORER_NOTE = ("Interactive in JupyterLab (<code>make lab</code>): there the controls above redraw this picture. "
                 "Here it shows the picture for their first values{values}.")


def page_name(notebook: Path | str) -> str:
    """A notebook's page in the site: ``04_training_an_mlp_vae.ipynb`` -> ``notebooks/04_training_an_mlp_vae.html``."""
    return "notebooks/" + Path(notebook).with_suffix(".html").name


def part_of(notebook: Path | str) -> str:
    """The Part a notebook belongs to, by its number: ``13_x.ipynb`` -> ``Part III: modern VAEs``."""
    number = int(Path(notebook).name[:2])
    return [title for first, title in PARTS if first <= number][-1]


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


#: TeX commands that plain text writes as one character (or as nothing).
_TEX_SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "theta": "θ",
                "lambda": "λ", "mu": "μ", "pi": "π", "sigma": "σ", "phi": "φ", "varphi": "φ", "psi": "ψ", "omega": "ω",
                "Phi": "Φ", "Sigma": "Σ", "sum": "Σ", "prod": "Π", "nabla": "∇", "mid": " | ", "cdot": "·", "times": "×",
                "odot": "⊙", "approx": "≈", "sim": "~", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "to": "→", "in": "∈",
                "infty": "∞", "pm": "±", "dots": "…", "ldots": "…", "top": "ᵀ", "sqrt": "√", "lVert": "‖", "rVert": "‖",
                "lfloor": "⌊", "rfloor": "⌋", "left": "", "right": ""}


def plain_tex(tex: str) -> str:
    """TeX read as plain text, for the places MathJax does not reach: a browser tab's title, a search result,
    an alternative text. ``\\mathcal N(0, I)`` -> ``N(0, I)``; ``q_\\phi(z \\mid x)`` -> ``qφ(z | x)``."""
    text = re.sub(r"\\(?:mathcal|mathbb|mathrm|mathbf|boldsymbol|operatorname|text|hat|tilde|bar)\s*", "", tex)
    text = re.sub(r"\\t?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r"\^\{?([0-9])\}?", lambda m: "⁰¹²³⁴⁵⁶⁷⁸⁹"[int(m.group(1))], text)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: _TEX_SYMBOLS.get(m.group(1), f" {m.group(1)} "), text)
    text = text.replace("\\|", "‖")
    text = re.sub(r"\\[,;:! ]", " ", text)
    text = re.sub(r"[{}_^$\\]", "", text)
    return re.sub(r"\s+", " ", text.replace("√ ", "√")).strip()


def _plain(markdown: str) -> str:
    """Markdown and TeX reduced to plain words for an alternative text."""
    text = re.sub(r"\$+([^$]*)\$+", lambda math: plain_tex(math.group(1)), markdown)
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

    running: dict[str, dict] = {}       # notebook -> the cell it runs, since when, its kernel's CPU time
    stalled: set[str] = set()

    def started(name: str, client):
        def hook(cell, cell_index):
            running[name] = {"cell": cell_index, "since": time.perf_counter(), "client": client, "cpu": None,
                             "cpu_at": None, "warned": False}
        return hook

    def kernel_cpu(client) -> float | None:
        try:
            import psutil

            return sum(psutil.Process(client.km.provisioner.pid).cpu_times()[:2])
        except Exception:                               # no kernel (yet), or no psutil: no verdict
            return None

    async def one(path: Path, slots: asyncio.Semaphore):
        from nbclient.exceptions import DeadKernelError

        async with slots:
            start = time.perf_counter()
            for attempt in (1, 2):
                nb = nbformat.read(path, as_version=4)
                client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                        resources={"metadata": {"path": str(path.parent)}})
                client.on_cell_execute = started(path.name, client)
                try:
                    await client.async_execute(env=env)
                    break
                except DeadKernelError:
                    if path.name not in stalled or attempt == 2:
                        raise
                    stalled.discard(path.name)
                    log(f"{path.name}: executed again from the top, in a fresh kernel")
                finally:
                    running.pop(path.name, None)
            seconds = time.perf_counter() - start
            log(f"{path.name:<40}{seconds:7.1f} s")
        if on_done is not None:
            await asyncio.to_thread(on_done, path.name, nb)
        return path.name, (nb, seconds)

    async def watch():
        """Name each cell that runs longer than ``SLOW_CELL_S``. A kernel that has used no CPU for
        ``STALL_S`` while its cell runs never started the cell (ipykernel now and then leaves a request
        unread, and the client would wait for the cell's whole timeout): it is stopped, and its notebook
        executed once more in a fresh kernel. Seen here at the slider explorers of notebooks 12 and 13
        (an open bug with widgets: jupyter/nbclient#312, jupyter/nbconvert#2029)."""
        while True:
            await asyncio.sleep(WATCH_S)
            now = time.perf_counter()
            for name, run in list(running.items()):
                if now - run["since"] > SLOW_CELL_S and not run["warned"]:
                    run["warned"] = True
                    log(f"{name}: cell {run['cell']} has run {now - run['since']:.0f} s")
                cpu = kernel_cpu(run["client"])
                if cpu is None or run["cpu"] is None or cpu - run["cpu"] > 0.5:
                    run["cpu"], run["cpu_at"] = cpu, now
                elif now - run["cpu_at"] > STALL_S and name not in stalled:
                    stalled.add(name)
                    log(f"{name}: cell {run['cell']} has waited {now - run['since']:.0f} s with its kernel idle "
                        f"for {now - run['cpu_at']:.0f} s: the kernel never started it; stopping the kernel")
                    os.kill(run["client"].km.provisioner.pid, signal.SIGKILL)

    async def run_all():
        slots = asyncio.Semaphore(jobs)
        watcher = asyncio.ensure_future(watch())
        # The later notebooks run longest; starting them first keeps every job busy until the end.
        tasks = [asyncio.ensure_future(one(p, slots)) for p in sorted(paths, key=lambda p: p.name, reverse=True)]
        try:
            done = await asyncio.gather(*tasks)
        finally:
            watcher.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, watcher, return_exceptions=True)
        return dict(done)

    results = asyncio.run(run_all())
    return {p.name: results[p.name] for p in paths}


# --------------------------------------------------------------------------- the execution cache


def library_fingerprint() -> str:
    """A hash of the library's code: every ``vae_lib`` module but the site's own (this one, the capture
    plugin :mod:`vae_lib.site_capture` and the book's configuration), which no notebook runs.

    It covers what the checkpoints' fingerprint covers and more (a notebook prints the library's
    source with ``show_source``), so any change in ``vae_lib`` makes every page be executed again.
    """
    digest = hashlib.sha256()
    for path in sorted(LIBRARY_DIR.rglob("*.py")):
        relative = path.relative_to(LIBRARY_DIR).as_posix()
        if relative in ("site.py", "site_capture.py") or relative.startswith("book/"):
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(nb, library: str | None = None, dataset: str | None = None) -> str:
    """What a notebook's outputs depend on: its code cells, the library's code and the data set."""
    from .data import dataset_name

    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    payload = {"code": code, "library": library or library_fingerprint(), "dataset": dataset_name(dataset)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cached_outputs(nb, executed):
    """``nb`` (the current notebook) with the outputs of ``executed``, code cell by code cell.

    The Markdown is the current notebook's, so an edit of the prose alone needs no execution.
    """
    nb = copy.deepcopy(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    done = [cell for cell in executed.cells if cell.cell_type == "code"]
    if len(code) != len(done):
        raise ValueError(f"the cached notebook has {len(done)} code cells, the notebook {len(code)}")
    for cell, old in zip(code, done):
        cell.outputs, cell.execution_count = old.get("outputs", []), old.get("execution_count")
    if "widgets" in executed.metadata:
        nb.metadata["widgets"] = executed.metadata["widgets"]
    return nb


def cache_path(name: str, cache: Path = CACHE_DIR, dataset: str | None = None) -> Path:
    """Where the cache keeps a notebook executed on a data set: ``cache/<data set>/<name>``.

    One folder per data set, so that the MNIST rehearsal (``make rehearsal``, run after ``make test`` in
    CI) keeps the Fashion-MNIST notebooks that ``make site`` reads.
    """
    from .data import dataset_name

    return Path(cache) / dataset_name(dataset) / Path(name).name


def store_executed(nb, name: str, key: str, cache: Path = CACHE_DIR, dataset: str | None = None) -> Path:
    """Store an executed notebook in the cache under ``key`` (:func:`cache_key`); return its path.

    The file is written beside its place and then renamed, so a build that is stopped never leaves a
    half-written notebook. Used by :func:`execute_cached` and by the nbval capture (:mod:`vae_lib.site_capture`).
    """
    import nbformat

    target = cache_path(name, cache, dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    nb.metadata["course_site"] = {"key": key}
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    nbformat.write(nb, partial)
    os.replace(partial, target)
    return target


def execute_cached(paths: list[Path], cache: Path = CACHE_DIR, timeout: int = 900, jobs: int = 1,
                   log=print) -> tuple[dict, list[str]]:
    """Each notebook executed, or taken from ``cache`` when its key is unchanged.

    Returns ``({name: executed notebook}, [names executed now])``. A notebook executed now is stored in
    the cache, under its key, as soon as it has run. ``make test`` fills the same cache as it runs the
    notebooks under nbval (:mod:`vae_lib.site_capture`), so that after it nothing is executed here.
    """
    import nbformat

    from .data import dataset_name

    library = library_fingerprint()
    results, stale = {}, []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        key = cache_key(nb, library)
        stored = cache_path(path.name, cache)
        if stored.is_file():
            executed = nbformat.read(stored, as_version=4)
            if executed.metadata.get("course_site", {}).get("key") == key:
                results[path.name] = cached_outputs(nb, executed)
                continue
        stale.append(path)

    def store(name: str, nb) -> None:
        store_executed(nb, name, cache_key(nb, library), cache)

    if stale:
        for name, (nb, _) in execute_many(stale, timeout, jobs, log, on_done=store).items():
            results[name] = nb
    log(f"{len(stale)} notebook(s) executed, {len(paths) - len(stale)} from the cache ({Path(cache) / dataset_name()})")
    return {p.name: results[p.name] for p in paths}, [p.name for p in stale]


# --------------------------------------------------------------------------- staging


_LINK = re.compile(r"(?<!\!)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")


def rewrite_links(markdown: str, source: str, staged: set[str]) -> str:
    """Point a page's relative links at the site's sources; a link to anything else keeps its text only.

    ``source``: the page's path in the repository (``docs/results.md``); ``staged``: the repository paths
    the site holds. The README is the home page (``index.md``) and ``docs/references.bib`` the
    bibliography page. Absolute URLs and anchors are left alone.
    """
    folder = Path(source).parent

    def replace(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        key = os.path.normpath(folder / path).replace(os.sep, "/")
        renamed = {"README.md": "index.md", "docs/references.bib": "bibliography.md"}.get(key)
        if renamed is None and key not in staged:
            return text
        if renamed is not None:
            path = os.path.relpath(renamed, folder).replace(os.sep, "/")
        return f"[{text}]({path}{'#' + anchor if anchor else ''})"

    return _LINK.sub(replace, markdown)


_SECTION_HEADING = re.compile(r"^#{2,3}\s+(\d+)\.\s", re.M)
_SECTION_REF = re.compile(r"(?:[Nn]otebook (\d\d)'s )?\bsection (\d+)\b")
_UNTOUCHABLE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`\n]*`|\[[^\]]*\]\([^)]*\)", re.S)


def section_label(notebook: str, number: int) -> str:
    """The cross-reference label of section ``number`` of a notebook: ``nb01-section-2``."""
    return f"nb{notebook[:2]}-section-{number}"


def number_sections(nb, name: str) -> set[int]:
    """Label every numbered section heading (``## 2. The gap``) of a notebook; return their numbers."""
    numbers = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            def label(match: re.Match) -> str:
                numbers.add(int(match.group(1)))
                return f"({section_label(name, int(match.group(1)))})=\n{match.group(0)}"
            cell.source = _SECTION_HEADING.sub(label, cell.source)
    return numbers


def cross_reference_sections(markdown: str, name: str, sections: dict[str, set[int]]) -> str:
    """Make "section 2" (this notebook's) and "notebook 03's section 6" references to those headings.

    Math, code and existing links are left alone, and so is a section that no heading numbers.
    """
    def replace(match: re.Match) -> str:
        other, number = match.group(1), int(match.group(2))
        target = name if other is None else next((n for n in sections if n.startswith(other)), None)
        if target is None or number not in sections.get(target, set()):
            return match.group(0)
        return f"{{ref}}`{match.group(0)} <{section_label(target, number)}>`"

    out, last = [], 0
    for skip in _UNTOUCHABLE.finditer(markdown):
        out.append(_SECTION_REF.sub(replace, markdown[last:skip.start()]))
        out.append(skip.group(0))
        last = skip.end()
    out.append(_SECTION_REF.sub(replace, markdown[last:]))
    return "".join(out)


def bibliography_keys(text: str) -> dict[str, str]:
    """For each entry of a BibTeX file, the identifiers a link to it contains: ``{identifier: key}``.

    An entry is found by its arXiv id (``eprint``), its DOI or its URL.
    """
    found = {}
    for entry in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, re.S):
        key, body = entry.group(1), entry.group(2)
        for field in ("eprint", "doi", "url"):
            value = re.search(rf"^\s*{field}\s*=\s*[{{\"]([^}}\"]+)[}}\"]", body, re.M | re.I)
            if value:
                found[value.group(1).strip().lower()] = key
    return found


def cite_references(markdown: str, keys: dict[str, str]) -> str:
    """In a ``## References`` list, end each work's line with its citation of the bibliography.

    A line is matched to a ``.bib`` entry by the arXiv id, DOI or URL of its links.
    """
    if not re.match(r"\s*## References\b", markdown):
        return markdown
    lines = []
    for line in markdown.splitlines():
        cited = []
        if line.lstrip().startswith(("- ", "* ")):
            for url in re.findall(r"\]\((https?://[^)\s]+)\)", line):
                arxiv = re.match(r"https?://arxiv\.org/abs/([^v?#]+)", url)
                doi = re.match(r"https?://(?:dx\.)?doi\.org/(.+)", url)
                ident = (arxiv or doi).group(1) if (arxiv or doi) else url
                key = keys.get(ident.lower())
                if key and key not in cited:
                    cited.append(key)
        lines.append(line + (f" (in the bibliography: {{cite:p}}`{','.join(cited)}`)" if cited else ""))
    return "\n".join(lines)


def collapse_solutions(nb):
    """Collapse every cell tagged ``solution``: a code cell behind "Show solution", Markdown in ``<details>``."""
    for cell in nb.cells:
        if not is_solution(cell):
            continue
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if "hide-cell" not in tags:
                tags.append("hide-cell")
            cell.metadata["mystnb"] = {"code_prompt_show": "Show the solution (code and its output)",
                                       "code_prompt_hide": "Hide the solution"}
        else:
            number = re.match(r"\s*\*Solution (\d+)\.\*", cell.source)
            title = f"Solution {number.group(1)}" if number else "Solution"
            cell.source = (f'<details class="course-solution">\n<summary>{title} (discussion)</summary>\n\n'
                           f"{cell.source}\n\n</details>")
    return nb


def stage_notebook(nb, name: str, staged: set[str], sections: dict[str, set[int]], keys: dict[str, str]):
    """An executed notebook made ready for Sphinx: explorers frozen, pictures described, solutions
    collapsed, sections labelled and cross-referenced, references cited, links checked."""
    nb = describe_images(freeze_widgets(nb))
    number_sections(nb, name)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = rewrite_links(cell.source, f"notebooks/{name}", staged)
            text = cross_reference_sections(text, name, sections)
            cell.source = cite_references(text, keys)
    nb = collapse_solutions(nb)
    nb.metadata.pop("course_site", None)
    import nbformat

    return nbformat.from_dict(nb)


def _toctree(caption: str, entries: list[str]) -> str:
    lines = "\n".join(entries)
    return f"\n```{{toctree}}\n:caption: {caption}\n:hidden:\n\n{lines}\n```\n"


def stage(src: Path, executed: dict, pages: list[str]) -> None:
    """Write the Sphinx sources into ``src``: the home page, the notebooks, the pages, figures, bibliography."""
    import nbformat

    names = list(executed)
    staged = {f"notebooks/{n}" for n in names} | set(pages)
    sections = {}
    for name in names:
        probe = copy.deepcopy(nbformat.read(REPO_ROOT / "notebooks" / name, as_version=4))
        sections[name] = number_sections(probe, name)
    bib = BIBLIOGRAPHY.read_text(encoding="utf-8")
    keys = bibliography_keys(bib)
    (src / "notebooks").mkdir(parents=True)
    for name, nb in executed.items():
        nbformat.write(stage_notebook(nb, name, staged, sections, keys), src / "notebooks" / name)
    for page in pages:
        target = src / page
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite_links((REPO_ROOT / page).read_text(encoding="utf-8"), page, staged), encoding="utf-8")
    (src / "references.bib").write_text(bib, encoding="utf-8")
    (src / "bibliography.md").write_text("# Bibliography\n\nEvery work the notebooks cite, from "
                                         "`docs/references.bib`.\n\n```{bibliography}\n:all:\n```\n", encoding="utf-8")
    if (REPO_ROOT / "figures").is_dir():
        shutil.copytree(REPO_ROOT / "figures", src / "figures")
    home = rewrite_links((REPO_ROOT / "README.md").read_text(encoding="utf-8"), "README.md", staged)
    for _, caption in PARTS:
        entries = [f"notebooks/{Path(n).stem}" for n in names if part_of(n) == caption]
        if entries:
            home += _toctree(caption, entries)
    for caption, patterns in PAGES.items():
        entries = [Path(p).with_suffix("").as_posix() for p in pages if any(Path(p).match(g) for g in patterns)]
        home += _toctree(caption, entries + (["bibliography"] if caption == "More" else []))
    (src / "index.md").write_text(home, encoding="utf-8")


def site_pages() -> list[str]:
    """The repository's Markdown pages that the site holds (``PAGES``), as paths from the repository root."""
    return sorted({p.relative_to(REPO_ROOT).as_posix() for patterns in PAGES.values() for pattern in patterns
                   for p in REPO_ROOT.glob(pattern)})


# --------------------------------------------------------------------------- building


def sphinx_build(src: Path, out: Path, log=print) -> None:
    """Build the HTML site from ``src`` into ``out`` with ``-W``: any warning fails the build."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-E",
               "-c", str(BOOK_DIR), "-d", str(out.parent / (out.name + "-doctrees")), str(src), str(out)]
    env = dict(os.environ, VAE_SITE_BIBLIOGRAPHY=str(src / "references.bib"))
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"sphinx-build failed (status {result.returncode}):\n{result.stderr[-6000:]}")
    log(f"{'sphinx-build':<40}{time.perf_counter() - start:7.1f} s")


def build(out: Path = SITE_DIR, only: list[str] | None = None, timeout: int = 900, log=print,
          jobs: int | None = None, cache: Path = CACHE_DIR) -> Path:
    """Build the site in ``out`` (replacing it) and return the path of its home page.

    ``only``: notebook number prefixes to put in the site (default: every notebook); ``jobs``:
    notebooks executed at once (default :func:`default_jobs`); ``cache``: the execution cache.
    """
    chosen = notebook_paths(only=only) if only else notebook_paths()
    jobs = jobs or default_jobs()
    work = Path(tempfile.mkdtemp(prefix=".site-", dir=out.parent))
    figures_tmp = tempfile.mkdtemp(prefix="site-figures-")
    previous_figures = os.environ.get("VAE_FIGURES_DIR")
    os.environ["VAE_FIGURES_DIR"] = figures_tmp      # the executed notebooks must not touch figures/
    try:
        start = time.perf_counter()
        executed, _ = execute_cached(chosen, cache, timeout, jobs, log)
        log(f"{'notebooks':<40}{time.perf_counter() - start:7.1f} s ({jobs} at a time)")
        stage(work / "src", executed, site_pages())
        sphinx_build(work / "src", work / "html", log)
        if out.exists():
            shutil.rmtree(out)
        (work / "html").rename(out)
    finally:
        if previous_figures is None:
            os.environ.pop("VAE_FIGURES_DIR", None)
        else:
            os.environ["VAE_FIGURES_DIR"] = previous_figures
        shutil.rmtree(figures_tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    log(f"the site is in {out} (open {out / 'index.html'}, or serve it: python -m http.server -d {out})")
    return out / "index.html"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_lib.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="notebook number prefixes to build, e.g. 04 05 (default: all)")
    parser.add_argument("--out", type=Path, default=SITE_DIR, help="the site's folder (default: site/)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"notebooks executed at once (default: one per CPU core, at most 4; here {default_jobs()})")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help=f"the execution cache (default: {CACHE_DIR})")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    build(args.out.resolve(), args.only, args.timeout, jobs=args.jobs, cache=args.cache.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
