"""House rules that keep the repository honest: clean notebooks, one dependency list, numbered files."""
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.strip() for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {r.strip() for r in extra}
    pip_section, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if stripped.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and stripped.strip().startswith("- "):
            pip_section.append(stripped.strip()[2:].strip())
    listed = {r for r in pip_section if not r.startswith("-e")}
    assert {_name(r) for r in listed} == {_name(r) for r in wanted}
    # Same version constraints too, not only the same names.
    assert listed == wanted
    assert any(r.startswith("-e .") for r in pip_section), "environment.yml must install the course itself"


def test_notebooks_exist_and_are_numbered():
    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", nb.name), nb.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_use_the_installed_library(path):
    source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    assert "sys.path" not in source, f"{path.name} edits sys.path; import vae_lib as installed"
    assert "import vae_lib" in source or "from vae_lib" in source
    assert "assert " in source, f"{path.name} checks nothing"


def test_running_the_tests_leaves_the_committed_figures_alone():
    """Under test the notebooks save their figures to a temporary folder; only `make course` writes figures/,
    and CI fails when a run changed the working tree."""
    makefile = (ROOT / "Makefile").read_text()
    recipes = dict(re.findall(r"^([a-z-]+):[^\n]*\n((?:\t[^\n]*\n?)+)", makefile, flags=re.M))
    for target in ("test", "notebooks"):
        assert 'VAE_FIGURES_DIR="$$(mktemp -d)"' in recipes[target], f"make {target} must not write figures/"
    assert "VAE_FIGURES_DIR" not in recipes["course"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "git status --porcelain" in ci and ci.index("make test") < ci.index("git status --porcelain")
