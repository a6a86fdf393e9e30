"""Exercises and their solutions: the checks behind them, and the student copy (``make student``).

Every notebook closes with a Markdown cell headed ``## Exercises`` whose numbered items (``1. ...`` or
``**1. ...``) are the exercises. Each solution is one or more cells tagged ``solution``: code cells
that run under nbval like every other cell (their source collapsed in JupyterLab and on the
website), and Markdown cells that discuss the output. A solution cell names its exercise first:
``# 2. ...`` in code, ``*Solution 2.* ...`` in Markdown. The solutions follow the exercises; the
references cell comes last.

``python -m vae_lib.student [folder]`` (``make student``) writes the notebooks without their
solution cells to ``student/``, with nbconvert's ``TagRemovePreprocessor``, for a class that
should try the exercises first. Introduced with the exercises of notebook 01.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .utils import REPO_ROOT

#: The tag of a solution cell.
SOLUTION_TAG = "solution"
#: Where ``make student`` writes its copy (gitignored).
STUDENT_DIR = REPO_ROOT / "student"

_EXERCISE = re.compile(r"^\s*(?:\*\*)?(\d+)\.\s", re.MULTILINE)
_SOLUTION = re.compile(r"^\s*(?:#\s*(\d+)\.|\*Solution (\d+)\.\*)")


def is_solution(cell) -> bool:
    """Whether a notebook cell is tagged ``solution``."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def exercise_numbers(nb) -> list[int]:
    """The numbers of the exercises listed in ``nb``'s ``## Exercises`` cell, in order.

    Raises ``ValueError`` when there is no such cell, or it lists no numbered exercise.
    """
    cells = [c for c in nb.cells if c.cell_type == "markdown" and re.search(r"^## Exercises\s*$", c.source, re.M)]
    if not cells:
        raise ValueError("no Markdown cell headed '## Exercises'")
    text = re.split(r"^## Exercises\s*$", cells[-1].source, flags=re.M)[-1]
    text = re.split(r"^##\s", text, flags=re.M)[0]           # stop at the next heading
    numbers = [int(n) for n in _EXERCISE.findall(text)]
    if not numbers:
        raise ValueError("the '## Exercises' cell lists no numbered exercise ('1. ...' or '**1. ...')")
    return numbers


def solution_numbers(nb) -> list[int]:
    """For each cell tagged ``solution``, the exercise it names (``# 2.`` or ``*Solution 2.*``), in order.

    Raises ``ValueError`` naming the cell when a solution cell does not say which exercise it solves.
    """
    numbers = []
    for index, cell in enumerate(nb.cells):
        if is_solution(cell):
            match = _SOLUTION.match(cell.source)
            if match is None:
                raise ValueError(f"cell {index} is tagged '{SOLUTION_TAG}' but does not begin with '# N.' (code) "
                                 f"or '*Solution N.*' (Markdown): {cell.source[:60]!r}")
            numbers.append(int(match.group(1) or match.group(2)))
    return numbers


def check_solutions(nb) -> None:
    """Raise ``ValueError`` unless every exercise has a solution cell that runs, and no solution is stray.

    "Runs": at least one of an exercise's solution cells is code, so nbval executes it, unless that
    exercise's Markdown solution says it cites a stored result (``benchmarks/results``).
    """
    exercises = exercise_numbers(nb)
    solved = solution_numbers(nb)
    stray = sorted(set(solved) - set(exercises))
    if stray:
        raise ValueError(f"solution cells for exercises {stray}, which the Exercises cell does not list")
    for number in exercises:
        cells = [c for c in nb.cells if is_solution(c) and _SOLUTION.match(c.source)
                 and int(_SOLUTION.match(c.source).group(1) or _SOLUTION.match(c.source).group(2)) == number]
        if not cells:
            raise ValueError(f"exercise {number} has no cell tagged '{SOLUTION_TAG}'")
        if not any(c.cell_type == "code" for c in cells) and not any("benchmarks/results" in c.source for c in cells):
            raise ValueError(f"exercise {number}'s solution has no code cell to execute (and cites no stored result)")


def student_copy(notebook: Path, destination: Path) -> Path:
    """Write ``notebook`` without its solution cells to the folder ``destination``; return the new path."""
    import nbformat
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    nb = nbformat.read(notebook, as_version=4)
    config = Config()
    config.TagRemovePreprocessor.remove_cell_tags = (SOLUTION_TAG,)
    config.TagRemovePreprocessor.enabled = True
    nb, _ = TagRemovePreprocessor(config=config).preprocess(nb, {})
    destination.mkdir(parents=True, exist_ok=True)
    path = destination / notebook.name
    nbformat.write(nb, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_lib.student",
                                     description="Write the notebooks without their solutions (make student).")
    parser.add_argument("folder", nargs="?", default=str(STUDENT_DIR), help=f"where to write them (default {STUDENT_DIR})")
    args = parser.parse_args(argv)
    destination = Path(args.folder).expanduser().resolve()
    notebooks = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if destination == (REPO_ROOT / "notebooks").resolve():
        parser.error("the student copy must not overwrite notebooks/; choose another folder")
    for path in notebooks:
        student_copy(path, destination)
    print(f"{len(notebooks)} notebooks without their solutions in {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
