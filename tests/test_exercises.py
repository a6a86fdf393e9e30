"""Every exercise has a solution that runs, and ``make student`` removes every solution."""
from __future__ import annotations

import nbformat
import pytest

from vae_lib.student import SOLUTION_TAG, check_solutions, exercise_numbers, is_solution, main, solution_numbers
from vae_lib.utils import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cell(kind: str, source: str, solution: bool = False):
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell = make(source)
    if solution:
        cell.metadata["tags"] = [SOLUTION_TAG]
    return cell


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_has_a_solution_that_runs(path):
    nb = nbformat.read(path, as_version=4)
    check_solutions(nb)
    for cell in nb.cells:
        if is_solution(cell) and cell.cell_type == "code":
            assert cell.metadata.get("jupyter", {}).get("source_hidden"), "a solution's code is collapsed in JupyterLab"


def test_check_solutions_fails_on_a_missing_a_stray_or_an_unrun_solution():
    exercises = _cell("markdown", "## Exercises\n\n**1. One.** Do it.\n\n2. Two. Do that.")
    good = _notebook(exercises, _cell("code", "# 1. one\nx = 1", True), _cell("markdown", "*Solution 1.* Yes.", True),
                     _cell("code", "# 2. two\ny = 2", True))
    check_solutions(good)
    assert exercise_numbers(good) == [1, 2] and solution_numbers(good) == [1, 1, 2]
    with pytest.raises(ValueError, match="exercise 2 has no cell"):
        check_solutions(_notebook(*good.cells[:3]))
    with pytest.raises(ValueError, match=r"exercises \[3\]"):
        check_solutions(_notebook(*good.cells, _cell("code", "# 3. three", True)))
    with pytest.raises(ValueError, match="no code cell to execute"):
        check_solutions(_notebook(exercises, _cell("markdown", "*Solution 1.* Words.", True), good.cells[3]))
    check_solutions(_notebook(exercises, _cell("markdown", "*Solution 1.* See benchmarks/results/x.md.", True),
                              good.cells[3]))
    with pytest.raises(ValueError, match="does not begin with"):
        solution_numbers(_notebook(_cell("code", "x = 1", True)))
    with pytest.raises(ValueError, match="no Markdown cell headed"):
        exercise_numbers(_notebook(_cell("markdown", "# Summary")))


def test_student_copy_has_every_cell_but_the_solutions(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    assert "without their solutions" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        full = nbformat.read(path, as_version=4)
        copy = nbformat.read(tmp_path / path.name, as_version=4)
        assert not any(is_solution(c) for c in copy.cells), path.name
        assert [c.source for c in copy.cells] == [c.source for c in full.cells if not is_solution(c)]
        assert exercise_numbers(copy) == exercise_numbers(full)     # the exercises stay


def test_student_copy_refuses_to_overwrite_the_notebooks():
    with pytest.raises(SystemExit):
        main([str(REPO_ROOT / "notebooks")])
