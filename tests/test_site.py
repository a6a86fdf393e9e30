"""The course's website (``make site``) in a real browser, with every non-local request blocked.

The built site in ``site/`` must pass every check of ``tests/site_check.py``; copies of it with the
local MathJax removed, with MathJax pointed at a CDN, and with a broken link between two notebooks
must each fail. Skipped when the site has not been built (``make site``) or the browser is missing,
unless ``VAE_REQUIRE_SITE=1`` (as in CI), which turns the skip into a failure.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

import browser
import site_check
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
def test_every_page_loads_offline_typeset_with_its_images_links_and_summary(capsys):
    _require_site()
    shot = browser.screenshot_dir() / "site_05_latent_space.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    reports = site_check.check_site(SITE_DIR, screenshot=shot)
    pages = {r.page for r in reports}
    assert pages >= {"index.html"} | {page_name(p) for p in notebook_paths()}, "a notebook has no page"
    assert not _problems(reports), _problems(reports)
    assert all(r.typeset > 0 for r in reports if r.page[:2].isdigit()), "a notebook's page typeset no math"
    with capsys.disabled():
        print(f"\n{len(reports)} pages checked; screenshot: {shot}")


def _copy(tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(SITE_DIR, copy)
    return copy


@pytest.mark.browser
def test_the_check_fails_without_the_local_math_library(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    shutil.rmtree(site / "_static" / "mathjax")
    problems = _problems(site_check.check_site(site, pages=["03_kl_divergence.html"]))
    assert "MathJax.js" in problems and "math not typeset" in problems


@pytest.mark.browser
def test_the_check_fails_when_the_math_comes_from_a_cdn(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    page = site / "03_kl_divergence.html"
    page.write_text(page.read_text().replace('src="_static/mathjax/MathJax.js',
                                             'src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.9/MathJax.js'))
    problems = _problems(site_check.check_site(site, pages=["03_kl_divergence.html"]))
    assert "blocked non-local request https://cdnjs.cloudflare.com" in problems


@pytest.mark.browser
def test_the_check_fails_on_a_broken_link_between_two_notebooks(tmp_path):
    _require_site()
    site = _copy(tmp_path)
    (site / "02_reparameterization.html").unlink()
    problems = _problems(site_check.check_site(site, pages=["01_elbo.html", "03_kl_divergence.html"]))
    assert "broken link '02_reparameterization.html'" in problems


# ------------------------------------------------------------------ the builder's own pieces, no browser
def test_links_point_at_the_sites_pages():
    names = {"04_training_an_mlp_vae.ipynb", "05_latent_space.ipynb"}
    text = ("[05](05_latent_space.ipynb) and [back](../README.md), [04](04_training_an_mlp_vae.ipynb#sum), "
            "[lib](vae_lib), [a figure](figures/04_x.png), ![img](figures/04_x.png), [web](https://example.org)")
    out = rewrite_links(text, names, from_readme=False, extra_pages={})
    assert "[05](05_latent_space.html)" in out and "[back](index.html)" in out
    assert "[04](04_training_an_mlp_vae.html#sum)" in out
    assert "[lib](" not in out and " lib," in out, "links to repository folders keep their text only"
    assert "![img](figures/04_x.png)" in out and "[web](https://example.org)" in out
    readme = rewrite_links("[`nb`](notebooks/05_latent_space.ipynb), [r](benchmarks/results/cpu.md)", names,
                           from_readme=True, extra_pages={"benchmarks/results/cpu.md": "benchmarks-cpu.html"})
    assert readme == "[`nb`](05_latent_space.html), [r](benchmarks-cpu.html)"


def test_an_explorer_becomes_its_first_picture_and_a_progress_bar_disappears():
    import nbformat

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
    import nbformat

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


def test_a_solution_is_collapsed_on_its_page():
    import nbformat

    from vae_lib.site import _exporter

    exercise = nbformat.v4.new_markdown_cell("## Exercises\n\n1. Add one and one.")
    solution = nbformat.v4.new_code_cell("# 1. the sum\nprint(1 + 1)")
    solution.metadata["tags"] = ["solution"]
    solution.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb = nbformat.v4.new_notebook(cells=[exercise, solution])
    html_page, _ = _exporter().from_notebook_node(nb, resources={"course": None})
    collapsed = re.search(r'<details class="course-solution"><summary>Solution[^<]*</summary>(.*?)</details>',
                          html_page, re.S)
    assert collapsed and "celltag_solution" in collapsed.group(1) and "<pre>2" in collapsed.group(1), \
        "the solution cell and its output sit inside a closed <details>"
    assert "add one and one" in html_page.split('<details class="course-solution">')[0].lower()


def test_every_picture_gets_the_interpretation_that_follows_it_as_alternative_text():
    import nbformat

    from vae_lib.site import _exporter, describe_images

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
    page, _ = _exporter().from_notebook_node(described, resources={"course": None})
    assert "No description has been provided" not in page


def test_outside_links_are_allowed_only_to_the_bibliography():
    assert site_check.is_reference("https://arxiv.org/abs/1312.6114")
    assert site_check.is_reference("https://arxiv.org/abs/1312.6114v11")
    assert site_check.is_reference("https://doi.org/10.1109/5.726791")
    assert not site_check.is_reference("https://arxiv.org/abs/9999.99999")
    assert not site_check.is_reference("https://example.org/tracker.js")
    assert site_check._check_link("https://example.org/", "01_elbo.html", SITE_DIR, []).startswith("link leaves")
