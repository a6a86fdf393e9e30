import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from vae_lib.course import NOTEBOOKS_DIR, execute, notebook_paths


def _write(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


def test_notebook_paths_are_numbered_and_ordered(tmp_path):
    for name in ("10_c.ipynb", "02_b.ipynb", "01_a.ipynb", "notes.ipynb"):
        _write(tmp_path / name, "1")
    assert [p.name for p in notebook_paths(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in notebook_paths(tmp_path, only=["02"])] == ["02_b.ipynb"]
    with pytest.raises(ValueError, match="starts with"):
        notebook_paths(tmp_path, only=["99"])
    assert notebook_paths()[0].parent == NOTEBOOKS_DIR


def test_execute_runs_in_the_notebook_folder_and_reports_failures(tmp_path):
    (tmp_path / "marker.txt").write_text("here")
    good = tmp_path / "01_good.ipynb"
    _write(good, "from pathlib import Path", "assert Path('marker.txt').read_text() == 'here'")
    seconds = execute(good, timeout=60, save_to=tmp_path / "out")
    assert seconds > 0 and (tmp_path / "out" / "01_good.ipynb").is_file()
    assert nbformat.read(good, as_version=4).cells[0].outputs == []  # the source notebook is untouched
    bad = tmp_path / "02_bad.ipynb"
    _write(bad, "assert 1 == 2, 'planted failure'")
    with pytest.raises(CellExecutionError, match="planted failure"):
        execute(bad, timeout=60)


def test_main_runs_the_chosen_notebooks_and_reports_times(tmp_path, monkeypatch, capsys):
    import vae_lib.course as course

    _write(tmp_path / "01_a.ipynb", "x = 1")
    _write(tmp_path / "02_b.ipynb", "assert False, 'not run'")
    monkeypatch.setattr(course, "NOTEBOOKS_DIR", tmp_path)
    assert course.main(["01"]) == 0
    out = capsys.readouterr().out
    assert "01_a.ipynb" in out and "02_b.ipynb" not in out and "all notebooks" in out
