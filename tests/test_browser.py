"""Browser tests: the course's notebooks in a real JupyterLab, driven through Chromium.

For every notebook with sliders: run its cells from JupyterLab's Run menu up to its last explorer
(nbval runs every cell in ``make test``), no cell may show an error; then every slider is moved
with the keyboard, its readout must change and the picture it drives must be redrawn. A fixture
notebook, written here, proves that the harness itself catches a draw function that ignores its
slider, an error in a cell and an error in a slider's callback, and that a run up to the last
explorer stops there.

Skipped (with the reason) when Chromium or playwright is missing, unless ``VAE_REQUIRE_BROWSER=1``
(as in CI), which turns the skip into a failure. Screenshots: ``tests/screenshots/<notebook>.png``.
The harness and its settings (timeouts, paths) are in ``tests/browser.py``.
"""
from __future__ import annotations

import json

import pytest

import browser

COURSE_NOTEBOOKS = browser.notebooks_with_sliders()


def _requirements() -> None:
    reason = browser.unavailable_reason()
    if reason is None:
        return
    if browser.browser_required():
        pytest.fail(f"browser tests cannot run and VAE_REQUIRE_BROWSER is set: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def lab():
    """A JupyterLab server for this module; always stopped, even when a test fails."""
    _requirements()
    server = browser.LabServer()
    try:
        try:
            server.start()
        except Exception as err:  # noqa: BLE001 - report why, as a failure
            pytest.fail(f"could not start JupyterLab: {err}", pytrace=False)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium with a fresh profile; always closed, even when a test fails."""
    _requirements()
    driver = browser.Browser()
    try:
        try:
            driver.start()
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"could not start the browser: {err}", pytrace=False)
        yield driver
    finally:
        driver.stop()


def _report(capsys, report: browser.NotebookReport) -> None:
    with capsys.disabled():  # shown even when pytest captures output
        print("\n" + report.summary())


def _fixture(lab, name: str, **kwargs) -> str:
    browser.write_fixture_notebook(lab.root / "fixtures" / f"{name}.ipynb", **kwargs)
    return f"fixtures/{name}.ipynb"


# ------------------------------------------------------------------------ the harness itself
def test_notebooks_with_sliders_are_found(tmp_path):
    browser.write_fixture_notebook(tmp_path / "01_with.ipynb")
    (tmp_path / "02_without.ipynb").write_text(json.dumps(
        {"cells": [{"cell_type": "code", "source": ["print('no sliders; FloatSlider only in a comment?')"],
                    "metadata": {}, "outputs": [], "execution_count": None},
                   {"cell_type": "markdown", "source": ["widgets.FloatSlider(...) in prose"], "metadata": {}}],
         "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert browser.notebooks_with_sliders(tmp_path) == [tmp_path / "01_with.ipynb"]
    assert browser.notebooks_with_sliders(tmp_path / "missing") == []


@pytest.mark.browser
def test_fixture_sliders_redraw(lab, chromium, capsys):
    """The harness passes a working notebook: every slider moves and redraws its picture."""
    report = browser.exercise_notebook(lab, chromium, _fixture(lab, "fixture_working"),
                                       browser.screenshot_dir() / "fixture_working.png")
    _report(capsys, report)
    assert [s.label for s in report.sliders] == ["a", "n", "shift", "colour"]
    assert [s.explorer for s in report.sliders] == [0, 0, 1, 1]
    by_label = {s.label: s for s in report.sliders}
    assert by_label["a"].key == "ArrowRight" and by_label["a"].after == "0.60"
    assert by_label["n"].key == "ArrowLeft" and by_label["n"].after == "4"  # at its maximum: ArrowRight can't
    assert by_label["shift"].before == "none" and by_label["shift"].after == "some"
    assert by_label["colour"].kind == "dropdown" and (by_label["colour"].before, by_label["colour"].after) == ("C0", "C3")
    assert report.screenshot.is_file() and report.screenshot.stat().st_size > 10_000


@pytest.mark.browser
def test_broken_callback_is_caught(lab, chromium, capsys):
    """A draw function that ignores its slider: the readout moves, the picture does not -> failure."""
    with pytest.raises(browser.PictureNotRedrawn, match="picture not redrawn: slider 'a'") as failure:
        browser.exercise_notebook(lab, chromium, _fixture(lab, "fixture_broken", broken=True),
                                  browser.screenshot_dir() / "fixture_broken.png", redraw_timeout_s=8)
    assert "moved from 0.50 to 0.60" in str(failure.value)
    with capsys.disabled():
        print(f"\nbroken fixture caught as expected: {failure.value}")


@pytest.mark.browser
def test_error_in_a_cell_is_caught(lab, chromium):
    with pytest.raises(browser.CellError, match="ZeroDivisionError"):
        browser.exercise_notebook(lab, chromium, _fixture(lab, "fixture_error_cell", error_cell=True),
                                  browser.screenshot_dir() / "fixture_error_cell.png")


@pytest.mark.browser
def test_a_run_through_the_last_explorer_stops_there(lab, chromium):
    """Cells after the last explorer (here the failing one) are not run; the sliders still move."""
    relpath = _fixture(lab, "fixture_error_after_explorers", error_cell=True)
    assert browser.last_slider_cell(lab.root / relpath) == 3
    report = browser.exercise_notebook(lab, chromium, relpath, None, through_last_explorer=True)
    assert [s.label for s in report.sliders] == ["a", "n", "shift", "colour"]


@pytest.mark.browser
def test_error_in_a_slider_callback_is_caught(lab, chromium):
    with pytest.raises(browser.CellError, match=r"(?s)output shows an error.*ValueError: draw cannot handle a=0.6"):
        browser.exercise_notebook(lab, chromium, _fixture(lab, "fixture_callback_error", callback_error=True),
                                  browser.screenshot_dir() / "fixture_callback_error.png")


# ----------------------------------------------------------------------- the course's notebooks
@pytest.mark.browser
@pytest.mark.parametrize(
    "notebook",
    COURSE_NOTEBOOKS or [pytest.param(None, marks=pytest.mark.skip(reason="no notebook with sliders yet"))],
    ids=[p.stem for p in COURSE_NOTEBOOKS] or ["none"])
def test_notebook_sliders(lab, chromium, capsys, notebook):
    """Run the notebook in JupyterLab up to its last explorer, then move every slider: readout and
    picture must change. (nbval runs every cell of it in ``make test``.)"""
    report = browser.exercise_notebook(lab, chromium, f"notebooks/{notebook.name}",
                                       browser.screenshot_dir() / f"{notebook.stem}.png", through_last_explorer=True)
    _report(capsys, report)
    assert report.sliders, f"{notebook.name} has no slider"
