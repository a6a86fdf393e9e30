"""The course's website (``make site``) in a real browser, with every non-local request blocked.

The built site in ``site/`` must pass every check of ``tests/site_check.py``; copies of it with a
fault planted must each fail the check that looks for that fault: the local MathJax removed, MathJax
pointed at a CDN, a broken link between two notebooks, the search index removed, a citation pointed
at another work's entry. The browser tests are skipped when the site has not been built (``make
site``) or the browser is missing, unless ``VAE_REQUIRE_SITE=1`` (as in CI), which turns the skip
into a failure. The course's own build steps (``vae_lib.site``) are tested without a browser below.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import nbformat
import pytest

import browser
import site_check
from vae_lib import site as course_site
from vae_lib.course import notebook_paths
from vae_lib.site import SITE_DIR, freeze_widgets, page_name, rewrite_links


def _require_site():
    reason = browser.unavailable_reason()
    if reason is None and not (SITE_DIR / "index.html").is_file():
        reason = f"the site has not been built ({SITE_DIR}/index.html is missing; run make site)"
    if reason is None:
        return
    if os.environ.get("VAE_REQUIRE_SITE") == "1":
        pytest.fail(f"the site test cannot run and VAE_REQUIRE_SITE is set: {reason}", pytrace=False)
    pytest.skip(f"site test skipped: {reason}")


def _problems(reports) -> str:
    return "\n".join(f"{r.page}: {p}" for r in reports for p in r.problems)


@pytest.mark.browser
def test_every_page_loads_offline_typeset_with_its_images_links_citations_summary_and_search(capsys):
    _require_site()
    shots = browser.screenshot_dir()
    shots.mkdir(parents=True, exist_ok=True)
    reports = site_check.check_site(SITE_DIR, screenshots=shots)
    pages = {r.page for r in reports}
    assert pages >= {"index.html", "bibliography.html"} | {page_name(p) for p in notebook_paths()}, \
        "a notebook has no page"
    assert {f"search.html?q={q.replace(' ', '+')}" for q in site_check.SEARCHES} <= pages, "a search was not run"
    assert not _problems(reports), _problems(reports)
    assert all(r.typeset > 0 for r in reports if site_check.is_notebook_page(r.page)), \
        "a notebook's page typeset no math"
    for name in ("site_sidebar.png", "site_search.png"):
        assert (shots / name).stat().st_size > 10_000, f"the screenshot {name} is missing or blank"
    with capsys.disabled():
        print(f"\n{len(reports)} pages and searches checked; screenshots: {shots / 'site_sidebar.png'}, "
              f"{shots / 'site_search.png'}")


def _copy(tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(SITE_DIR, copy)
    return copy


KL_PAGE = "notebooks/03_kl_divergence.html"


@pytest.mark.browser
def test_the_check_fails_without_the_local_math_library(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    shutil.rmtree(site / "_static" / "mathjax")
    problems = _problems(site_check.check_site(site, pages=[KL_PAGE], searches={}))
    assert "tex-chtml.js" in problems and "math not typeset" in problems and "MathJax did not load" in problems


@pytest.mark.browser
def test_the_check_fails_when_the_math_comes_from_a_cdn(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    page = site / KL_PAGE
    text = page.read_text()
    assert 'src="../_static/mathjax/tex-chtml.js' in text
    page.write_text(text.replace('src="../_static/mathjax/tex-chtml.js',
                                 'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js'))
    problems = _problems(site_check.check_site(site, pages=[KL_PAGE], searches={}))
    assert "blocked non-local request https://cdn.jsdelivr.net" in problems


@pytest.mark.browser
def test_the_check_fails_on_a_broken_link_between_two_notebooks(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    (site / "notebooks" / "02_reparameterization.html").unlink()
    problems = _problems(site_check.check_site(site, pages=["notebooks/01_elbo.html", KL_PAGE], searches={}))
    assert "broken link '02_reparameterization.html'" in problems


@pytest.mark.browser
def test_the_search_check_fails_without_the_index_or_on_the_wrong_page(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    (site / "searchindex.js").unlink()
    problems = _problems(site_check.check_site(site, pages=["index.html"],
                                               searches={"VampPrior": "notebooks/12_learned_priors.html"}))
    assert "search for 'VampPrior' found nothing" in problems
    problems = _problems(site_check.check_site(SITE_DIR, pages=["index.html"],
                                               searches={"VampPrior": "notebooks/01_elbo.html"}))
    assert "search for 'VampPrior' does not rank notebooks/01_elbo.html among its first 3" in problems


@pytest.mark.browser
def test_the_bibliography_check_fails_when_a_citation_leads_to_another_work_or_nowhere(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    page = site / "notebooks" / "01_elbo.html"
    text = page.read_text()
    targets = re.findall(r'class="bibtex-citation"[^>]*>\[<a class="reference internal" href="([^"]+)"', text)
    assert len(set(targets)) >= 2, "notebook 01 cites two works of the bibliography"
    page.write_text(text.replace(targets[0], targets[1]))          # Kingma and Welling now lead to Rezende et al.
    problems = _problems(site_check.check_site(site, pages=["notebooks/01_elbo.html"], searches={}))
    assert "links to the entry of another work" in problems
    (site / "bibliography.html").unlink()
    problems = _problems(site_check.check_site(site, pages=["notebooks/01_elbo.html"], searches={}))
    assert "links to no bibliography entry" in problems


@pytest.mark.browser
def test_the_check_fails_on_tex_in_a_tabs_title_or_a_search_results_title(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    page = site / "notebooks" / "12_learned_priors.html"
    text = page.read_text()
    plain = "12 · Learned priors: when N(0, I) is the wrong guess"
    assert f"<title>{plain} &#8212;" in text, "notebook 12's tab shows its title in plain text"
    page.write_text(text.replace(f"<title>{plain}", r"<title>12 · Learned priors: when \(\mathcal N(0, I)\) is the wrong guess"))
    index = site / "searchindex.js"
    data = json.loads(index.read_text().removeprefix("Search.setIndex(")[:-1])
    data["titles"] = [title.replace("N(0, I)", r"\mathcal N(0, I)") for title in data["titles"]]
    index.write_text("Search.setIndex(" + json.dumps(data) + ")")
    problems = _problems(site_check.check_site(site, pages=["notebooks/12_learned_priors.html"],
                                               searches={"VampPrior": "notebooks/12_learned_priors.html"}))
    assert "raw TeX in the page's title (the browser's tab)" in problems
    assert "raw TeX in a search result's title: '12 · Learned priors: when \\\\mathcal N(0, I)" in problems, problems


# ------------------------------------------------------------------ the course's own steps, no browser
def test_links_point_at_the_sites_sources_and_lose_the_link_to_anything_else():
    staged = {"notebooks/04_training_an_mlp_vae.ipynb", "notebooks/05_latent_space.ipynb", "docs/results.md"}
    text = ("[05](05_latent_space.ipynb) and [back](../README.md), [04](04_training_an_mlp_vae.ipynb#sum), "
            "[lib](../vae_lib), [r](../docs/results.md#a), ![img](../figures/04_x.png), [web](https://example.org), "
            "[06](06_vae_vs_autoencoder.ipynb)")
    out = rewrite_links(text, "notebooks/05_latent_space.ipynb", staged)
    assert "[05](05_latent_space.ipynb)" in out and "[back](../index.md)" in out
    assert "[04](04_training_an_mlp_vae.ipynb#sum)" in out and "[r](../docs/results.md#a)" in out
    assert "[lib](" not in out and " lib," in out, "links to repository folders keep their text only"
    assert "![img](../figures/04_x.png)" in out and "[web](https://example.org)" in out
    assert "[06](" not in out, "a notebook left out of the site (a partial build) is not linked"
    readme = rewrite_links("[`nb`](notebooks/05_latent_space.ipynb), [bib](docs/references.bib), [c](LICENSE)",
                           "README.md", staged)
    assert readme == "[`nb`](notebooks/05_latent_space.ipynb), [bib](bibliography.md), c"


def test_an_explorer_becomes_its_first_picture_and_a_progress_bar_disappears():
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "FloatSliderModel", "state": {"description": "z₁", "value": 0.5}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}]}},
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_progress"]}},
        "progress": {"model_name": "FloatProgressModel", "state": {"value": 3}},
    }
    view = "application/vnd.jupyter.widget-view+json"
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("display_data", data={view: {"model_id": "bar"}, "text/plain": "bar"}),
                    nbformat.v4.new_output("display_data", data={view: {"model_id": "box"}, "text/plain": "VBox"})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    frozen = freeze_widgets(nb)
    outputs = frozen.cells[0].outputs
    assert len(outputs) == 2 and "widgets" not in frozen.metadata
    assert "make lab" in outputs[0]["data"]["text/html"] and "z₁ = 0.50" in outputs[0]["data"]["text/html"]
    assert outputs[1]["data"]["image/png"] == "iVBOR"
    assert re.search(r"interactive in jupyterlab", outputs[0]["data"]["text/html"], re.I)


def test_notebooks_run_two_at_a_time_and_a_failing_one_stops_the_build(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)      # each kernel gets its share of the cores

    from vae_lib.site import execute_many

    def notebook(name, source):
        path = tmp_path / name
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
        return path

    good = [notebook(f"0{i}_good.ipynb", f"import os\nprint({i}, os.environ['OMP_NUM_THREADS'])") for i in (1, 2)]
    done = []
    results = execute_many(good, timeout=60, jobs=2, log=lambda line: None, on_done=lambda name, nb: done.append(name))
    assert list(results) == ["01_good.ipynb", "02_good.ipynb"] and sorted(done) == list(results)
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    for i, (nb, seconds) in enumerate(results.values(), 1):
        assert nb.cells[0].outputs[0]["text"].split() == [str(i), threads] and seconds > 0
    bad = notebook("03_bad.ipynb", "1 / 0")
    with pytest.raises(Exception, match="ZeroDivisionError"):
        execute_many([good[0], bad], timeout=60, jobs=2, log=lambda line: None)




def test_every_notebook_falls_in_its_part_and_a_new_one_joins_part_three():
    assert course_site.part_of("01_elbo.ipynb").startswith("Part I:")
    assert course_site.part_of("07_evaluating_a_vae.ipynb").startswith("Part I:")
    assert course_site.part_of("08_convolutional_vae.ipynb").startswith("Part II:")
    assert course_site.part_of("12_learned_priors.ipynb").startswith("Part III:")
    assert course_site.part_of("13_hierarchical_vae.ipynb").startswith("Part III:")
    assert page_name("13_hierarchical_vae.ipynb") == "notebooks/13_hierarchical_vae.html"


def _solution_notebook():
    exercise = nbformat.v4.new_markdown_cell("## Exercises\n\n1. Add one and one.")
    solution = nbformat.v4.new_code_cell("# 1. the sum\nprint(1 + 1)")
    solution.metadata["tags"] = ["solution"]
    solution.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    discussion = nbformat.v4.new_markdown_cell("*Solution 1.* It prints $2$.")
    discussion.metadata["tags"] = ["solution"]
    return nbformat.v4.new_notebook(cells=[exercise, solution, discussion])


def test_a_kernel_that_never_starts_its_cell_is_stopped_and_the_notebook_run_once_more(tmp_path, monkeypatch):
    from nbclient.exceptions import DeadKernelError

    # A sleeping cell looks, from outside, like one the kernel never read: no CPU used while it "runs".
    monkeypatch.setattr(course_site, "STALL_S", 2)
    monkeypatch.setattr(course_site, "WATCH_S", 0.5)
    idle = _code_notebook(tmp_path / "01_idle.ipynb", "import time\ntime.sleep(30)")
    lines = []
    with pytest.raises(DeadKernelError):
        course_site.execute_many([idle], timeout=120, jobs=1, log=lines.append)
    log = "\n".join(lines)
    assert log.count("the kernel never started it") == 2, log
    assert "01_idle.ipynb: executed again from the top, in a fresh kernel" in log


def test_a_solution_is_collapsed_on_its_page():
    nb = course_site.collapse_solutions(_solution_notebook())
    exercise, code, discussion = nb.cells
    assert "hide-cell" in code.metadata["tags"] and "solution" in code.metadata["tags"], \
        "myst-nb shows a hide-cell cell, input and output, inside a closed <details>"
    assert "solution" in code.metadata["mystnb"]["code_prompt_show"].lower()
    assert re.fullmatch(r'<details class="course-solution">\n<summary>Solution 1 \(discussion\)</summary>\n\n'
                        r"\*Solution 1\.\* It prints \$2\$\.\n\n</details>", discussion.source)
    assert exercise.source.startswith("## Exercises"), "the exercise itself stays open"


def test_every_picture_gets_the_interpretation_that_follows_it_as_alternative_text():
    from vae_lib.site import describe_images

    def plot_cell():
        cell = nbformat.v4.new_code_cell("plt.show()")
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=\n",
                                                                      "text/plain": "<Figure>"})]
        return cell

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## 2. The gap"), plot_cell(),
        nbformat.v4.new_markdown_cell("**What the figure shows.** The bars shrink as $N$ grows. The gap stays. More."),
        plot_cell(), nbformat.v4.new_markdown_cell("Next we train.")])
    described = describe_images(nb)
    first, second = (c.outputs[0]["data"]["text/html"] for c in described.cells if c.cell_type == "code")
    assert 'alt="Figure: The bars shrink as N grows. The gap stays."' in first
    assert "The gap" in second and "section" in second and "iVBORw0KGgo=" in second
    assert "image/png" in nb.cells[1].outputs[0]["data"], "the notebook itself is left as it was"


def test_sections_the_prose_names_become_cross_references():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 2. The gap\n\ntext"),
                                         nbformat.v4.new_markdown_cell("### 5. Monte Carlo")])
    assert course_site.number_sections(nb, "01_elbo.ipynb") == {2, 5}
    assert nb.cells[0].source.startswith("(nb01-section-2)=\n## 2. The gap")
    sections = {"01_elbo.ipynb": {2, 5}, "03_kl_divergence.ipynb": {6}}
    text = ("The identity of section 2 holds; Notebook 03's section 6 does it; section 9 has no heading; "
            "$x$ in section 5, `section 2` and [section 2](#x) stay as they are.")
    out = course_site.cross_reference_sections(text, "01_elbo.ipynb", sections)
    assert "{ref}`section 2 <nb01-section-2>` holds" in out
    assert "{ref}`Notebook 03's section 6 <nb03-section-6>`" in out
    assert "section 9 has" in out and "{ref}`section 5 <nb01-section-5>`" in out
    assert "`section 2` and [section 2](#x)" in out


def test_each_work_of_a_reference_list_is_cited_from_the_bibliography():
    bib = course_site.BIBLIOGRAPHY.read_text(encoding="utf-8")
    keys = course_site.bibliography_keys(bib)
    assert keys["1312.6114"] == "kingma2014auto"
    cell = ("## References\n\n- Kingma and Welling (2014). [arXiv:1312.6114](https://arxiv.org/abs/1312.6114v2)\n"
            "- A blog post. [link](https://example.org/post)")
    out = course_site.cite_references(cell, keys).splitlines()
    assert out[2].endswith("(in the bibliography: {cite:p}`kingma2014auto`)")
    assert out[3] == "- A blog post. [link](https://example.org/post)", "a work outside the .bib is not cited"
    assert course_site.cite_references("Some prose [x](https://arxiv.org/abs/1312.6114)", keys).endswith(")"), \
        "only a References cell is touched"


def _code_notebook(path, source, prose="# A notebook"):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(prose),
                                                   nbformat.v4.new_code_cell(source)]), path)
    return path


def test_the_cache_key_follows_code_library_and_data_but_not_prose():
    a = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("one"), nbformat.v4.new_code_cell("x = 1")])
    b = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("two"), nbformat.v4.new_code_cell("x = 1")])
    c = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 2")])
    key = course_site.cache_key(a, "lib1", "fashion-mnist")
    assert key == course_site.cache_key(b, "lib1", "fashion-mnist"), "an edit of the prose needs no execution"
    assert key != course_site.cache_key(c, "lib1", "fashion-mnist")
    assert key != course_site.cache_key(a, "lib2", "fashion-mnist"), "a change in vae_lib executes again"
    assert key != course_site.cache_key(a, "lib1", "mnist-5k")
    assert len(course_site.library_fingerprint()) == 64


def test_a_rebuild_executes_only_the_notebook_that_changed(tmp_path, monkeypatch):
    library = {"fingerprint": "lib1"}
    monkeypatch.setattr(course_site, "library_fingerprint", lambda: library["fingerprint"])
    paths = [_code_notebook(tmp_path / f"0{i}_n.ipynb", f"print({i})") for i in (1, 2)]
    cache = tmp_path / "cache"
    quiet = {"log": lambda line: None, "timeout": 60, "jobs": 2}
    done, executed = course_site.execute_cached(paths, cache, **quiet)
    assert executed == ["01_n.ipynb", "02_n.ipynb"] and done["02_n.ipynb"].cells[1].outputs[0]["text"] == "2\n"
    _code_notebook(paths[1], "print(22)", prose="# New prose")
    done, executed = course_site.execute_cached(paths, cache, **quiet)
    assert executed == ["02_n.ipynb"] and done["02_n.ipynb"].cells[1].outputs[0]["text"] == "22\n"
    _code_notebook(paths[0], "print(1)", prose="# Only the prose changed")
    done, executed = course_site.execute_cached(paths, cache, **quiet)
    assert executed == [] and done["01_n.ipynb"].cells[0].source == "# Only the prose changed"
    assert done["01_n.ipynb"].cells[1].outputs[0]["text"] == "1\n"
    library["fingerprint"] = "lib2"                     # vae_lib changed: every page is stale
    _, executed = course_site.execute_cached(paths, cache, **quiet)
    assert executed == ["01_n.ipynb", "02_n.ipynb"]


def _notebook_of(path, *sources):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {path.stem}")]
                                            + [nbformat.v4.new_code_cell(src) for src in sources]), path)
    return path


#: A tiny notebook with what the course's notebooks show: printed lines, a tqdm bar, a slider explorer.
EXPLORER_NOTEBOOK = [
    "import ipywidgets as widgets\nimport matplotlib.pyplot as plt\nfrom tqdm.auto import tqdm\n\n"
    "from vae_lib.widgets import slider_explorer\nprint('set up')",
    "for step in tqdm(range(3), desc='training'):\n    print('step', step)",
    "def draw(slope):\n    fig, ax = plt.subplots(figsize=(2, 2))\n    ax.plot([0, 1], [0, slope])\n\n"
    "explorer = slider_explorer(draw, {'slope': widgets.FloatSlider(value=0.5, min=0, max=1, description='slope')},\n"
    "                           title='A line')\nexplorer",
    "print('after the explorer')",
]


def _page(nb) -> list[list[tuple]]:
    """What a notebook's page shows, cell by cell: its frozen outputs, streams merged (as the site merges them)."""
    page = []
    for cell in course_site.freeze_widgets(nb).cells:
        if cell.cell_type != "code":
            continue
        shown = []
        for output in cell.outputs:
            data = output.get("data", {})
            if output["output_type"] == "stream" and shown and shown[-1][:2] == ("stream", output["name"]):
                shown[-1] = ("stream", output["name"], shown[-1][2] + output["text"])
            elif output["output_type"] == "stream":
                shown.append(("stream", output["name"], output["text"]))
            else:
                shown.append((output["output_type"], tuple(sorted(data)), data.get("text/html", "")))
        page.append(shown)
    return page


def test_make_test_stores_the_notebooks_it_ran_as_make_site_would_and_never_a_failed_one(tmp_path, monkeypatch):
    """The nbval capture (vae_lib.site_capture) stores each notebook whose cells all passed under the key make
    site checks, so make site executes nothing after it; the stored notebook makes the page an nbclient run
    makes (the explorer frozen with its note above its picture, the progress bar gone); a notebook with a
    failed cell is not stored, and neither is its passing start."""
    import subprocess
    import sys

    monkeypatch.setenv("VAE_DATASET", "fashion-mnist")
    explorer = _notebook_of(tmp_path / "01_explorer.ipynb", *EXPLORER_NOTEBOOK)
    failing = _notebook_of(tmp_path / "02_failing.ipynb", "print('first')", "1 / 0", "print('third')")
    plain = _notebook_of(tmp_path / "03_plain.ipynb", "x = 41", "", "print(x + 1)")
    cache = tmp_path / "cache"
    run = subprocess.run([sys.executable, "-m", "pytest", explorer.name, failing.name, plain.name, "--nbval-lax",
                          "--nbval-current-env", "-p", "no:cacheprovider", "-p", "vae_lib.site_capture",
                          "--site-cache", str(cache), "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "1 failed, 9 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 executed notebook(s) stored for make site" in run.stdout
    assert sorted(p.name for p in (cache / "fashion-mnist").iterdir()) == ["01_explorer.ipynb", "03_plain.ipynb"], \
        "a notebook with a failed cell is never stored"

    done, executed = course_site.execute_cached([explorer, plain], cache, log=lambda line: None)
    assert executed == [], "make site finds what make test stored under the key it checks"
    assert [c.execution_count for c in done["03_plain.ipynb"].cells[1:]] == [1, None, 2]
    assert done["03_plain.ipynb"].cells[3].outputs[0]["text"] == "42\n"

    captured = _page(done["01_explorer.ipynb"])
    setup, progress, frozen, after = captured
    assert setup == [("stream", "stdout", "set up\n")]
    assert progress == [("stream", "stdout", "step 0\nstep 1\nstep 2\n")], "the progress bar is left out"
    assert [o[0] for o in frozen] == ["display_data", "display_data"], frozen
    assert "Interactive in JupyterLab" in frozen[0][2] and "slope = 0.50" in frozen[0][2], \
        "the note, with the slider's first value, is above the explorer's picture"
    assert "image/png" in frozen[1][1]
    assert after == [("stream", "stdout", "after the explorer\n")]
    nbclient_run = course_site.execute_many([explorer], timeout=120, log=lambda line: None)
    assert _page(nbclient_run[explorer.name][0]) == captured, "the captured page is the one make site would make"


def test_a_notebook_is_stored_only_when_every_cell_passed_whole():
    from vae_lib.site_capture import NotebookCapture

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)"), nbformat.v4.new_markdown_cell("m"),
                                         nbformat.v4.new_code_cell("print(2)")])

    def messages(msg_id, text, idle=True):
        out = [{"msg_type": "stream", "parent_header": {"msg_id": msg_id}, "header": {"msg_type": "stream"},
                "content": {"name": "stdout", "text": text}},
               {"msg_type": "stream", "parent_header": {"msg_id": "another cell"}, "header": {"msg_type": "stream"},
                "content": {"name": "stdout", "text": "late output of another cell\n"}}]
        return out + ([{"msg_type": "status", "parent_header": {"msg_id": msg_id}, "header": {"msg_type": "status"},
                        "content": {"execution_state": "idle"}}] if idle else [])

    capture = NotebookCapture(nb, "lib")
    assert capture.replay(0, "a", messages("a", "1\n"))
    assert not capture.complete()
    with pytest.raises(ValueError, match=r"cells \[1\] have not passed"):
        capture.notebook()                           # a deselected or failed last cell: nothing to store
    assert not capture.replay(1, "b", messages("b", "2\n", idle=False)), "outputs without the cell's end are partial"
    assert not capture.replay(1, None, messages("b", "2\n")), "no request seen, no outputs"
    assert capture.replay(1, "b", messages("b", "2\n")) and capture.complete()
    stored = capture.notebook()
    assert [c.outputs[0]["text"] for c in stored.cells if c.cell_type == "code"] == ["1\n", "2\n"]
    assert nb.cells[0].outputs == [], "the notebook nbval read is left as it was"


def test_the_rehearsal_keeps_the_pages_of_fashion_mnist(tmp_path, monkeypatch):
    """make rehearsal runs the notebooks on mnist-5k after make test: its entries must not replace the
    Fashion-MNIST ones that make site reads."""
    path = _code_notebook(tmp_path / "01_n.ipynb", "print(1)")
    cache = tmp_path / "cache"
    for dataset in ("fashion-mnist", "mnist-5k"):
        monkeypatch.setenv("VAE_DATASET", dataset)
        executed = nbformat.read(path, as_version=4)
        executed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{dataset}\n")]
        course_site.store_executed(executed, path.name, course_site.cache_key(executed), cache)
    monkeypatch.setenv("VAE_DATASET", "fashion-mnist")
    done, executed = course_site.execute_cached([path], cache, log=lambda line: None)
    assert executed == [] and done[path.name].cells[1].outputs[0]["text"] == "fashion-mnist\n"
    assert course_site.cache_path(path.name, cache, "mnist-5k").is_file()
    assert not list(cache.rglob("*.partial")), "a stored notebook is written whole, then renamed"


def test_tex_reads_as_plain_text_where_mathjax_does_not_reach():
    plain = course_site.plain_tex
    assert plain(r"\mathcal N(0, I)") == "N(0, I)"
    assert plain(r"q_\phi(z\mid x)") == "qφ(z | x)"
    assert plain(r"\text{KL}(q \,\|\, p) \ge 0") == "KL(q ‖ p) ≥ 0"
    assert plain(r"\tfrac{1}{2}\log \sigma^2") == "1/2 log σ²"
    assert plain(r"1/\sqrt N") == "1/√N" and plain(r"\text{IWAE}_k") == "IWAEk"
    assert plain("no math, 3 words") == "no math, 3 words" and plain("") == ""
    assert not re.search(r"[\\$]", plain(r"$\unknowncommand{x}$ and \( y \)")), "no TeX is left, known or not"


def test_a_broken_reference_fails_the_sphinx_build_and_a_title_with_math_is_plain_in_the_tab(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(course_site.BIBLIOGRAPHY, src / "references.bib")
    (src / "bibliography.md").write_text("# Bibliography\n\n```{bibliography}\n:all:\n```\n")
    (src / "index.md").write_text("# Home: when $\\mathcal N(0, I)$ is the wrong guess\n\n"
                                  "See {cite:p}`kingma2014auto` and {ref}`x`.\n\n## The bound $\\text{IWAE}_k$\n\n"
                                  "```{toctree}\n:hidden:\n\nbibliography\n```\n")
    with pytest.raises(RuntimeError, match=r"undefined label: 'x'"):
        course_site.sphinx_build(src, tmp_path / "html", log=lambda line: None)
    (src / "index.md").write_text((src / "index.md").read_text().replace(" and {ref}`x`", ""))
    course_site.sphinx_build(src, tmp_path / "html", log=lambda line: None)
    home = (tmp_path / "html" / "index.html").read_text()
    assert "Kingma and Welling, 2014" in home, "the citation is rendered from docs/references.bib"
    assert (tmp_path / "html" / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is served locally"
    assert (tmp_path / "html" / "searchindex.js").is_file()
    assert "<title>Home: when N(0, I) is the wrong guess &#8212;" in home, "the browser's tab shows no TeX"
    assert re.search(r'<h1>Home: when <span class="math[^"]*">\\\(\\mathcal N\(0, I\)\\\)</span>', home), \
        "the heading keeps its math"
    index = json.loads((tmp_path / "html" / "searchindex.js").read_text().removeprefix("Search.setIndex(")[:-1])
    shown = list(index["titles"]) + list(index["alltitles"])
    assert "Home: when N(0, I) is the wrong guess" in shown and "The bound IWAEk" in shown, shown
    assert not [title for title in shown if "\\" in title or "$" in title], "nor do the search results"


def test_outside_links_are_allowed_only_to_the_bibliography():
    assert site_check.is_reference("https://arxiv.org/abs/1312.6114")
    assert site_check.is_reference("https://arxiv.org/abs/1312.6114v11")
    assert site_check.is_reference("https://doi.org/10.1109/5.726791")
    assert not site_check.is_reference("https://arxiv.org/abs/9999.99999")
    assert not site_check.is_reference("https://example.org/tracker.js")
    assert site_check._check_link("https://example.org/", "notebooks/01_elbo.html", SITE_DIR, []).startswith("link leaves")
