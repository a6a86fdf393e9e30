"""The course installs anywhere and a learner's run leaves the clone clean.

* A built wheel holds everything the course needs (every subpackage, the website's configuration), and
  installed outside the repository it keeps data, checkpoints and outputs in the working directory
  (or ``VAE_HOME``), never in site-packages.
* A notebook run as a learner runs it (no ``VAE_*`` variable set) in a scratch copy of the clone
  leaves ``git status`` clean: its figures go to the gitignored ``outputs/figures/``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

from vae_lib.utils import REPO_ROOT, course_root, figures_dir, in_checkout, outputs_dir

pytestmark = pytest.mark.skipif(not (REPO_ROOT / ".git").exists() or shutil.which("git") is None,
                                reason="needs the course's git clone and git")


def _learner_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAE_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def _setup_cell(notebook: str) -> str:
    nb = nbformat.read(REPO_ROOT / "notebooks" / notebook, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def _copy_tracked(destination: Path) -> Path:
    """The working tree's tracked files (as they are now, changes included) copied to ``destination``."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of the tracked files: a build in the clone itself would pick up a stale build/ folder.
    tree = _copy_tracked(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(tree)], check=True, cwd=out, env=_learner_env())
    (path,) = out.glob("vae_course-*.whl")
    return path


def test_wheel_holds_every_module_and_the_website_configuration(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "vae_lib"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    missing = [f for f in tracked if f not in names and (REPO_ROOT / f).exists()]
    assert not missing, f"the wheel leaves out {missing}"
    assert {"vae_lib/book/conf.py", "vae_lib/book/_static/course.css"} <= names
    assert not any(n.startswith(("data/", "checkpoints/", "figures/", "outputs/", "notebooks/")) for n in names)


def test_wheel_installed_outside_the_repository_keeps_its_files_in_the_working_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The new environment sees the course's dependencies (torch, matplotlib, ...) through a path file; the
    # path file adds a folder without running that folder's own .pth files, so the editable install of
    # this clone stays invisible and vae_lib comes from the wheel.
    (site / "course_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, env=_learner_env())
    work = tmp_path / "learner"
    work.mkdir()
    # notebook 04's setup cell loads a data set: the 5,000 real digits of the rehearsal set, written to data/
    script = _setup_cell("04_training_an_mlp_vae.ipynb").replace("TIME_PIPELINES = True", "TIME_PIPELINES = False")
    script += "\n\n" + """
import json, vae_lib
from vae_lib import site as course_site
from vae_lib.utils import checkpoint_dir, course_root, data_dir, figures_dir, in_checkout
print("RESULT", json.dumps({"package": vae_lib.__file__, "root": str(course_root()), "data": str(data_dir()),
      "checkpoints": str(checkpoint_dir()), "figures": str(figures_dir()), "in_checkout": in_checkout(),
      "book": (course_site.BOOK_DIR / "conf.py").is_file()}))
"""
    run = subprocess.run([str(python), "-c", script], cwd=work, capture_output=True, text=True,
                         env=_learner_env(VAE_DATASET="mnist-5k", MPLBACKEND="Agg"), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert Path(result["package"]).is_relative_to(site), f"vae_lib came from {result['package']}, not the wheel"
    assert not result["in_checkout"] and result["book"]
    for key in ("root", "data", "checkpoints", "figures"):
        assert Path(result[key]).resolve().is_relative_to(work.resolve()), f"{key} resolved to {result[key]}"
    assert any((work / "data").rglob("*-ubyte")), "the data set was not written under the working directory"
    assert not any(p.name in ("data", "checkpoints", "outputs", "figures") for p in site.iterdir())


def test_folders_follow_vae_home_and_figures_default_to_outputs(tmp_path, monkeypatch):
    for var in ("VAE_HOME", "VAE_FIGURES_DIR", "VAE_OUTPUTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert in_checkout() and course_root() == REPO_ROOT
    assert figures_dir() == REPO_ROOT / "outputs" / "figures"
    monkeypatch.setenv("VAE_HOME", str(tmp_path))
    assert course_root() == tmp_path and outputs_dir() == tmp_path / "outputs"
    assert figures_dir() == tmp_path / "outputs" / "figures"
    monkeypatch.setenv("VAE_FIGURES_DIR", str(tmp_path / "elsewhere"))
    assert figures_dir() == tmp_path / "elsewhere"


def test_a_learners_run_leaves_the_clone_clean(tmp_path):
    """Notebook 01 run as in JupyterLab (its own folder as working directory, no VAE_* set) in a scratch
    copy of the working tree: it saves its figures, and git sees no change."""
    from nbclient import NotebookClient

    scratch = _copy_tracked(tmp_path / "clone")
    git = ["git", "-c", "user.name=learner", "-c", "user.email=learner@example.org"]
    subprocess.run(git + ["init", "-q"], cwd=scratch, check=True)
    subprocess.run(git + ["add", "-A"], cwd=scratch, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "scratch"], cwd=scratch, check=True)
    env = _learner_env(PYTHONPATH=str(scratch), MPLBACKEND="module://matplotlib_inline.backend_inline")
    notebook = scratch / "notebooks" / "01_elbo.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    old = os.environ.copy()
    try:
        os.environ.clear()
        os.environ.update(env)    # the kernel inherits this process's environment
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    saved = list((scratch / "outputs" / "figures").glob("*.png"))
    assert saved, "notebook 01 saved no figure under outputs/figures/"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=scratch, capture_output=True, text=True,
                            check=True).stdout
    assert status == "", f"running notebook 01 changed the clone:\n{status}"
