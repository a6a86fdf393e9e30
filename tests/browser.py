"""Browser harness: run the course's notebooks in a real JupyterLab and move their sliders.

Used by ``tests/test_browser.py``. Three pieces, each with a ``start``/``stop`` pair that the tests'
fixtures call in ``try/finally``:

* :class:`LabServer` starts ``python -m jupyterlab`` with *this* Python (``sys.executable``, so the
  kernel is the course's environment) on 127.0.0.1, a free port and a random token, serving a
  temporary copy of ``notebooks/`` (JupyterLab never writes to the course's own files). Its runtime,
  config, data, settings, workspaces and IPython folders are temporary too: nothing the learner
  has is read or touched.
* :class:`Browser` drives Debian's Chromium (``/usr/bin/chromium``) through PyPI's ``playwright``
  with ``executable_path`` (Playwright's own browser download is never used), headless, with a
  fresh profile.
* :func:`exercise_notebook` opens one notebook, runs all cells (or those up to its last explorer)
  from JupyterLab's Run menu, waits for the kernel to be idle, checks that no cell shows an error,
  then moves every slider with the keyboard and checks that its readout changed and that the picture it drives was redrawn (the
  ``<img>`` data in the explorer's ``Output`` differs from before). It saves a screenshot.

Failures raise :class:`HarnessFailure` (an ``AssertionError``) subclasses with a message that says
what was seen: :class:`CellError`, :class:`ReadoutUnchanged`, :class:`PictureNotRedrawn`,
:class:`NoPicture`, :class:`NotebookTimeout`.

Environment variables (all optional):

``VAE_CHROMIUM``                 Chromium to drive (default ``/usr/bin/chromium``).
``VAE_REQUIRE_BROWSER=1``        a missing Chromium or playwright fails the tests instead of skipping.
``VAE_BROWSER_START_TIMEOUT``    seconds to start the server / browser / open a notebook (120).
``VAE_BROWSER_RUN_TIMEOUT``      seconds for "Run All Cells" of one notebook to finish (900).
``VAE_BROWSER_REDRAW_TIMEOUT``   seconds a slider's picture may take to redraw (60).
``VAE_BROWSER_SCREENSHOTS``      where screenshots go (default ``tests/screenshots/``).
``VAE_CHROMIUM_NO_SANDBOX=1``    pass ``--no-sandbox`` even when not root (it is always passed as root).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# The checkpoint and data folders the notebooks' kernels share with nbval in the same `make test`, read once when
# this module is imported (before any test's fixture points VAE_CHECKPOINT_DIR at a temporary folder): the
# browser run trains each model once and nbval loads it, so that a CI run trains every model once.
SHARED_CHECKPOINTS = os.environ.get("VAE_CHECKPOINT_DIR") or str(REPO_ROOT / "checkpoints")
SHARED_DATA = os.environ.get("VAE_DATA_DIR") or str(REPO_ROOT / "data")
DEFAULT_CHROMIUM = "/usr/bin/chromium"
INSTALL_CHROMIUM = "install it with: sudo apt-get update && sudo apt-get install -y chromium"
INSTALL_PLAYWRIGHT = (f"install it with: {sys.executable} -m pip install playwright "
                      "(or `make setup`; do not run `playwright install`, Debian's Chromium is used)")

#: Source text that marks a notebook as having sliders (or dropdowns, which the harness moves too).
SLIDER_PATTERN = re.compile(
    r"\b(slider_explorer|(Float|Int|FloatLog|Selection|IntRange|FloatRange|SelectionRange)Slider|Dropdown"
    r"|interact(ive)?)\s*\("
    r"|@interact\b")

#: Keys tried, in order, until a slider's readout changes (an ipywidgets 8 slider is a noUiSlider:
#: its focused handle takes arrows, PageUp/PageDown; ArrowRight does nothing at the maximum).
SLIDER_KEYS = ("ArrowRight", "ArrowLeft", "PageUp", "PageDown")


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


def start_timeout() -> float:
    return _env_seconds("VAE_BROWSER_START_TIMEOUT", 120)


def run_timeout() -> float:
    return _env_seconds("VAE_BROWSER_RUN_TIMEOUT", 900)


def redraw_timeout() -> float:
    return _env_seconds("VAE_BROWSER_REDRAW_TIMEOUT", 60)


def browser_required() -> bool:
    return os.environ.get("VAE_REQUIRE_BROWSER", "").strip().lower() not in ("", "0", "false", "no")


def screenshot_dir() -> Path:
    return Path(os.environ.get("VAE_BROWSER_SCREENSHOTS") or REPO_ROOT / "tests" / "screenshots")


def chromium_path() -> str:
    return os.environ.get("VAE_CHROMIUM") or DEFAULT_CHROMIUM


def unavailable_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    chromium = chromium_path()
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        return f"Chromium not found at {chromium}; {INSTALL_CHROMIUM} (or set VAE_CHROMIUM to its path)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        return f"Python package playwright is not installed ({err}); {INSTALL_PLAYWRIGHT}"
    return None


# ------------------------------------------------------------------------------------- failures
class HarnessFailure(AssertionError):
    """Something a learner would see go wrong in the browser."""


class CellError(HarnessFailure):
    """A cell (or a slider's output) shows an error."""


class ReadoutUnchanged(HarnessFailure):
    """Keys were pressed on a slider and its readout did not change."""


class PictureNotRedrawn(HarnessFailure):
    """A slider moved but the picture it drives kept the same image data."""


class NoPicture(HarnessFailure):
    """A slider has no picture (an ipywidgets Output with an <img>) next to it, or none rendered."""


class NotebookTimeout(HarnessFailure):
    """Run All Cells, or the notebook itself, did not finish in time."""


# ----------------------------------------------------------------------------------- discovery
def uses_sliders(path: Path) -> bool:
    """Whether the notebook at ``path`` builds ipywidgets sliders in a code cell."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            if SLIDER_PATTERN.search("".join(source) if isinstance(source, list) else source):
                return True
    return False


def last_slider_cell(path: Path) -> int:
    """The index (among all cells) of the notebook's last code cell that builds sliders; -1 if none."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    last = -1
    for index, cell in enumerate(nb.get("cells", [])):
        source = cell.get("source", "")
        if cell.get("cell_type") == "code" and SLIDER_PATTERN.search(
                "".join(source) if isinstance(source, list) else source):
            last = index
    return last


def notebooks_with_sliders(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("*.ipynb")) if uses_sliders(p)]


# ------------------------------------------------------------------------------------ fixtures
def write_fixture_notebook(path: Path, *, broken: bool = False, error_cell: bool = False,
                           callback_error: bool = False) -> Path:
    """A small notebook with two ``vae_lib.widgets.slider_explorer`` explorers and trivial drawings.

    ``broken``: every draw function ignores its arguments (the picture never changes).
    ``error_cell``: a cell after the explorers raises ``ZeroDivisionError``.
    ``callback_error``: the first explorer's draw raises once its slider leaves the initial value.
    Every variant also has a cell that emits a warning (stderr, but not an error).
    The first cell asserts that the kernel runs this Python (``sys.prefix``): the course's environment.
    """
    import nbformat

    a_arg = "0.5" if broken else "a"
    n_arg = "3" if broken else "n"
    shift_arg = '"none"' if broken else "shift"
    colour_arg = '"C0"' if broken else "colour"
    guard = ('    if a != 0.5:\n        raise ValueError(f"draw cannot handle a={a}")\n' if callback_error else "")
    cells = [
        nbformat.v4.new_markdown_cell("# Browser-test fixture\nTwo slider explorers built with `vae_lib.widgets`."),
        nbformat.v4.new_code_cell(
            "import sys\n"
            f"assert sys.prefix == {sys.prefix!r}, sys.prefix  # the kernel runs the course's environment\n"
            "print(sys.executable)"),
        nbformat.v4.new_code_cell(
            "import ipywidgets as widgets\n"
            "import matplotlib.pyplot as plt\n"
            "from IPython.display import display\n"
            "from vae_lib.widgets import slider_explorer\n"
            "\n"
            "def draw_line(a, n):\n"
            f"{guard}"
            "    fig, ax = plt.subplots(figsize=(4, 2.5))\n"
            f"    ax.plot(range(6), [{a_arg} * min(k, {n_arg}) for k in range(6)], marker='o')\n"
            "    ax.set_ylim(-6, 6)\n"
            f"    ax.set_title('a = %.2f, n = %d' % ({a_arg}, {n_arg}))\n"
            "\n"
            "display(slider_explorer(draw_line, {\n"
            "    'a': widgets.FloatSlider(value=0.5, min=-1.0, max=1.0, step=0.1, description='a'),\n"
            "    'n': widgets.IntSlider(value=5, min=0, max=5, description='n'),  # starts at its maximum\n"
            "}, height='300px', title='Line'))"),
        nbformat.v4.new_code_cell(
            "def draw_bars(shift, colour):\n"
            "    fig, ax = plt.subplots(figsize=(4, 2.5))\n"
            "    offset = {'none': 0, 'some': 1, 'lots': 3}[%s]\n"
            "    ax.bar(range(4), [1 + offset, 2, 3, 4 - offset], color=%s)\n"
            "    ax.set_ylim(0, 8)\n"
            "\n"
            "slider_explorer(draw_bars, {'shift': widgets.SelectionSlider(options=['none', 'some', 'lots'],"
            " description='shift'), 'colour': widgets.Dropdown(options=['C0', 'C3'], description='colour')},"
            " height='300px', title='Bars')" % (shift_arg, colour_arg)),
    ]
    # A warning is printed on stderr like a traceback, but it is not an error.
    cells.append(nbformat.v4.new_code_cell("import warnings\nwarnings.warn('a warning is not an error')"))
    if error_cell:
        cells.append(nbformat.v4.new_code_cell("1 / 0"))
    cells.append(nbformat.v4.new_code_cell("print('the end')"))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# ------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: JupyterLab user settings for the test server: render every cell (no virtual scrolling, so the
#: whole notebook is in the DOM), no autosave, and no news / update checks (there is no internet).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


class LabServer:
    """A JupyterLab server on 127.0.0.1 running this Python, serving a temporary copy of the notebooks."""

    def __init__(self, notebooks_dir: Path = NOTEBOOKS_DIR):
        self.notebooks_dir = Path(notebooks_dir)
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None
        self.port = 0
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "root"

    def _prepare_root(self) -> None:
        """``root/notebooks`` is a copy of the course's notebooks; the repository's other top-level
        entries are symlinked beside it, so ``../figures/x.png`` resolves as in the real tree."""
        self.root.mkdir(parents=True)
        if self.notebooks_dir.is_dir():
            shutil.copytree(self.notebooks_dir, self.root / "notebooks",
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
            for nb_path in (self.root / "notebooks").glob("*.ipynb"):
                _use_python3_kernel(nb_path)
        if self.notebooks_dir.resolve() == NOTEBOOKS_DIR.resolve():
            for entry in REPO_ROOT.iterdir():
                if not entry.name.startswith(".") and entry.name != "notebooks":
                    (self.root / entry.name).symlink_to(entry)
        (self.root / "fixtures").mkdir()

    def start(self, timeout: float | None = None) -> "LabServer":
        timeout = timeout or start_timeout()
        self.tmp = Path(tempfile.mkdtemp(prefix="vae-browser-lab-"))
        self._prepare_root()
        for rel, settings in LAB_SETTINGS.items():
            f = self.tmp / "lab-settings" / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(settings))
        self.port, self.token = free_port(), secrets.token_hex(24)
        env = dict(os.environ)
        env.update({
            "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.tmp / "config"),
            "JUPYTER_DATA_DIR": str(self.tmp / "data"),
            "JUPYTERLAB_SETTINGS_DIR": str(self.tmp / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.tmp / "lab-workspaces"),
            "IPYTHONDIR": str(self.tmp / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONUNBUFFERED": "1",
            # The notebooks' kernels save figures and outputs here, not in the learner's folders.
            # Checkpoints and data sets stay shared: they are caches, which nbval then reuses.
            "VAE_CHECKPOINT_DIR": SHARED_CHECKPOINTS,
            "VAE_DATA_DIR": SHARED_DATA,
            "VAE_FIGURES_DIR": str(self.tmp / "figures"),
            "VAE_OUTPUTS_DIR": str(self.tmp / "outputs"),
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        })
        env.pop("JUPYTER_TOKEN", None)
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: read cells' models, as Galata does
            "--LabApp.news_url=",
            "--LanguageServerManager.autodetect=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log_path = self.tmp / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the JupyterLab server exited with status {self.proc.returncode} while starting:\n"
                                   + self.log_tail())
            try:
                status = self.api("GET", "/api/status", timeout=5)
                if "started" in status:
                    return self
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the JupyterLab server did not answer on {self.url} within {timeout:.0f} s "
                                   f"(VAE_BROWSER_START_TIMEOUT):\n" + self.log_tail())
            time.sleep(0.25)

    def api(self, method: str, path: str, timeout: float = 10):
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def lab_url(self, relpath: str) -> str:
        # ``reset``: start from an empty workspace, so no earlier notebook is reopened.
        return f"{self.url}/lab/tree/{relpath}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Shut down every session and kernel (frees the memory a trained model holds)."""
        try:
            for session in self.api("GET", "/api/sessions") or []:
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
            for kernel in self.api("GET", "/api/kernels") or []:
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        except (urllib.error.URLError, OSError, ValueError):
            pass

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AttributeError):
            return "(no server log)"

    def stop(self) -> None:
        """Shut down kernels, then the server (SIGTERM, SIGKILL after 20 s); remove the temporary tree."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.shutdown_kernels()
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            if getattr(self, "_log", None) is not None:
                self._log.close()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)


def _use_python3_kernel(path: Path) -> None:
    """In the temporary copy, make the notebook ask for the native ``python3`` kernel (this Python)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    spec = nb.setdefault("metadata", {}).get("kernelspec") or {}
    if spec.get("name") != "python3":
        nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                        "language": "python"}
        path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


# ------------------------------------------------------------------------------------ browser
class Browser:
    """Debian's Chromium driven by playwright: headless, fresh profile, no background networking."""

    def __init__(self, executable: str | None = None):
        self.executable = executable or chromium_path()
        self._pw = None
        self.context = None
        self.profile: Path | None = None

    def start(self, timeout: float | None = None) -> "Browser":
        timeout = timeout or start_timeout()
        if not (os.path.isfile(self.executable) and os.access(self.executable, os.X_OK)):
            raise RuntimeError(f"Chromium not found at {self.executable}; {INSTALL_CHROMIUM}")
        from playwright.sync_api import sync_playwright

        no_sandbox = (hasattr(os, "geteuid") and os.geteuid() == 0) or os.environ.get("VAE_CHROMIUM_NO_SANDBOX") == "1"
        args = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage"]
        if no_sandbox:
            args.insert(0, "--no-sandbox")
        self.profile = Path(tempfile.mkdtemp(prefix="vae-browser-profile-"))
        self._pw = sync_playwright().start()
        try:
            self.context = self._pw.chromium.launch_persistent_context(
                str(self.profile), executable_path=self.executable, headless=True, args=args,
                chromium_sandbox=not no_sandbox, viewport={"width": 1400, "height": 1000},
                timeout=timeout * 1000)
        except Exception as err:
            self.stop()
            hint = "" if no_sandbox else " (if Chromium's sandbox cannot start here, set VAE_CHROMIUM_NO_SANDBOX=1)"
            raise RuntimeError(f"could not start Chromium {self.executable}: {err}{hint}") from err
        self.context.set_default_timeout(30_000)
        return self

    def stop(self) -> None:
        try:
            if self.context is not None:
                self.context.close()
        finally:
            self.context = None
            try:
                if self._pw is not None:
                    self._pw.stop()
            finally:
                self._pw = None
                if self.profile is not None:
                    shutil.rmtree(self.profile, ignore_errors=True)


# ------------------------------------------------------------------------- in-page JavaScript
#: The state of the open notebook: kernel status, and per code cell its prompt, count and errors.
#: Errors are found twice: in the cell's model (outputs of type "error"), and in the DOM, where
#: JupyterLab renders a traceback as stderr text, also inside a widget's Output (a slider callback).
_STATE_JS = r"""
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return {ready: false, why: 'JupyterLab is not loaded'};
  let panel = null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) { panel = w; break; }
  }
  if (!panel) return {ready: false, why: 'the notebook is not open'};
  const ctx = panel.sessionContext;
  const kernel = ctx.session && ctx.session.kernel;
  const dialogs = Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText.trim());
  const STDERR = 'application/vnd.jupyter.stderr';  // how JupyterLab renders both tracebacks and warnings
  const isError = (text) => /Traceback \(most recent call last\)/.test(text)
      || /^\s*[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(:|\s*$)/m.test(text)
      || /^Error displaying widget/m.test(text) || /^Error rendering/m.test(text);
  const cells = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const prompt = (cell.node.querySelector('.jp-InputPrompt') || {}).textContent || '';
    const modelErrors = cell.model.outputs.toJSON().filter(o => o.output_type === 'error')
        .map(o => `${o.ename}: ${o.evalue}`);
    const domErrors = Array.from(cell.node.querySelectorAll('.jp-OutputArea-output'))
        .filter(el => el.getAttribute('data-mime-type') === STDERR || /^Error (displaying|rendering)/.test(el.innerText || ''))
        .map(el => el.innerText || '').filter(isError).map(t => t.trim().split('\n').slice(-12).join('\n'));
    cells.push({index, prompt: prompt.trim(), count: cell.model.executionCount,
                empty: cell.model.sharedModel.getSource().trim() === '',
                errors: modelErrors.concat(domErrors)});
  });
  return {ready: true, kernel: kernel ? kernel.status : 'none', dialogs, cells};
}
"""

#: Make one cell (by index) the notebook's active cell, as clicking it would.
_SELECT_CELL_JS = r"""
([path, index]) => {
  const app = window.jupyterapp;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content) {
      w.content.mode = 'command';
      w.content.activeCellIndex = Math.min(index, w.content.widgets.length - 1);
      w.content.deselectAll();
      return w.content.activeCellIndex;
    }
  }
  return -1;
}
"""

#: Number every slider (data-vae-slider) and the explorer around it (data-vae-explorer): the
#: nearest ancestor, inside the cell, that holds an ipywidgets Output.
_SLIDERS_JS = r"""
(path) => {
  const app = window.jupyterapp;
  let panel = null;
  for (const w of app.shell.widgets('main')) if (w.context && w.context.path === path) panel = w;
  const cellNodes = panel.content.widgets.map(c => c.node);
  const explorers = [];
  return Array.from(panel.content.node.querySelectorAll('.widget-slider, .widget-dropdown')).map((slider, index) => {
    slider.setAttribute('data-vae-slider', String(index));
    let box = null;
    for (let el = slider.parentElement; el && !el.classList.contains('jp-Cell'); el = el.parentElement) {
      if (el.querySelector('.widget-output')) { box = el; break; }
    }
    let explorer = -1;
    if (box) {
      explorer = explorers.indexOf(box);
      if (explorer < 0) { explorers.push(box); explorer = explorers.length - 1; }
      box.setAttribute('data-vae-explorer', String(explorer));
    }
    const label = slider.querySelector('.widget-label');
    const cell = cellNodes.findIndex(n => n.contains(slider));
    const select = slider.querySelector('select');
    return {index, explorer, cell, label: label ? label.textContent.trim() : '',
            kind: slider.classList.contains('widget-dropdown') ? 'dropdown' : 'slider',
            options: select ? select.options.length : 0,
            disabled: slider.classList.contains('mod-disabled') || !!slider.querySelector('.noUi-target[disabled]')
                      || !!(select && select.disabled)};
  });
}
"""

#: One slider's readout and the image data of its explorer's pictures (plus any error shown there).
_SLIDER_STATE_JS = r"""
([slider, explorer]) => {
  const s = document.querySelector(`[data-vae-slider="${slider}"]`);
  const box = explorer >= 0 ? document.querySelector(`[data-vae-explorer="${explorer}"]`) : null;
  const readoutEl = s && s.querySelector('.widget-readout');
  const handle = s && s.querySelector('.noUi-handle');
  const select = s && s.querySelector('select');
  let readout = readoutEl && readoutEl.offsetParent !== null ? readoutEl.textContent.trim() : null;
  if (readout === null && handle) readout = handle.getAttribute('aria-valuetext');
  if (select) readout = select.selectedIndex >= 0 ? select.options[select.selectedIndex].text.trim() : null;
  const images = box ? Array.from(box.querySelectorAll('.widget-output img')).map(i => i.getAttribute('src') || '') : [];
  const errors = box ? Array.from(box.querySelectorAll(
        '.widget-output .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
      .map(el => el.innerText || '')
      .filter(t => /Traceback \(most recent call last\)/.test(t) || /^\s*[A-Za-z_][\w.]*(Error|Exception)(:|\s*$)/m.test(t))
      .map(t => t.trim().split('\n').slice(-12).join('\n')) : [];
  return {readout, images, errors};
}
"""


# ---------------------------------------------------------------------------------- the check
@dataclass
class SliderResult:
    index: int
    explorer: int
    cell: int
    label: str
    kind: str = "slider"          # or "dropdown"
    options: int = 0              # a dropdown's number of options
    key: str = ""
    before: str | None = None
    after: str | None = None
    redraw_s: float = 0.0


@dataclass
class NotebookReport:
    notebook: str
    screenshot: Path | None = None
    open_s: float = 0.0
    run_s: float = 0.0
    interact_s: float = 0.0
    sliders: list[SliderResult] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.notebook}: opened in {self.open_s:.1f} s, ran all cells in {self.run_s:.1f} s, "
                 f"moved {len(self.sliders)} slider(s) in {self.interact_s:.1f} s"]
        for s in self.sliders:
            lines.append(f"  explorer {s.explorer} (cell {s.cell}) slider {s.label or s.index!r}: "
                         f"{s.key} {s.before} -> {s.after}, picture redrawn in {s.redraw_s:.2f} s")
        if self.screenshot:
            lines.append(f"  screenshot: {self.screenshot}")
        return "\n".join(lines)


def _describe(slider: SliderResult) -> str:
    name = f"{slider.kind} {slider.label!r}" if slider.label else f"{slider.kind} #{slider.index}"
    return f"{name} (explorer {slider.explorer}, cell {slider.cell})"


class NotebookSession:
    """One notebook open in JupyterLab in its own browser page."""

    def __init__(self, server: LabServer, browser: Browser, relpath: str):
        self.server, self.browser, self.relpath = server, browser, relpath
        self.name = Path(relpath).stem
        self.page = None
        self.console_errors: list[str] = []

    # -- opening and running
    def open(self, timeout: float) -> None:
        self.page = self.browser.context.new_page()
        self.page.on("pageerror", lambda err: self.console_errors.append(f"page error: {err}"))
        self.page.on("console", lambda msg: self.console_errors.append(f"console {msg.type}: {msg.text}")
                     if msg.type == "error" else None)
        self.page.goto(self.server.lab_url(self.relpath), timeout=timeout * 1000)
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while True:  # the notebook is open and its kernel has started
            state = self.state()
            if state.get("ready") and state["kernel"] == "idle":
                break
            if state.get("dialogs"):
                raise HarnessFailure(f"{self.name}: JupyterLab shows a dialog instead of the notebook: "
                                     f"{state['dialogs']}")
            if time.monotonic() > deadline:
                raise NotebookTimeout(f"{self.name}: the notebook's kernel was not idle within {timeout:.0f} s "
                                      f"of opening it (state: {state}) (VAE_BROWSER_START_TIMEOUT)")
            time.sleep(0.25)
        # Collapse the left sidebar (the file browser): more room for the notebook in screenshots.
        current = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if current.count():
            current.first.click()

    def state(self) -> dict:
        return self.page.evaluate(_STATE_JS, self.relpath)

    def run_all(self, timeout: float, through: int | None = None) -> None:
        """Run > Run All Cells from JupyterLab's menu, then wait until every cell ran and the kernel is idle.

        With ``through`` (a cell index): Run > Run All Above Selected Cell with the next cell selected,
        so cells 0 to ``through`` run and the later ones do not (they must not have run).
        """
        clicked_at, attempts = self._click_run_all(through), 1
        deadline, settled, started = time.monotonic() + timeout, 0, False
        while True:
            time.sleep(0.5)
            state = self.state()
            if state.get("ready") and not started:
                started = state["kernel"] != "idle" or any(
                    c["prompt"].startswith("[*]") or c["count"] is not None for c in state["cells"])
                if not started and time.monotonic() - clicked_at > 15:
                    if attempts >= 2:
                        raise HarnessFailure(f"{self.name}: Run > Run All Cells was clicked twice and no cell "
                                             f"started (state: {state})")
                    clicked_at, attempts = self._click_run_all(through), attempts + 1
                    continue
            if not state.get("ready"):
                raise HarnessFailure(f"{self.name}: the notebook closed while running: {state.get('why')}")
            if state["dialogs"]:
                raise HarnessFailure(f"{self.name}: JupyterLab shows a dialog: {state['dialogs']}")
            cells = state["cells"]
            queued = [c["index"] for c in cells if c["prompt"].startswith("[*]")]
            pending = [c["index"] for c in cells if not c["empty"] and c["count"] is None
                       and (through is None or c["index"] <= through)]
            ran_too_far = [c["index"] for c in cells if through is not None and c["index"] > through
                           and c["count"] is not None]
            if ran_too_far:
                raise HarnessFailure(f"{self.name}: cells {ran_too_far} ran, but only cells up to {through} "
                                     "were asked for")
            errors = [c for c in cells if c["errors"]]
            idle = state["kernel"] == "idle" and not queued
            if idle and (errors or not pending):
                settled += 1
            else:
                settled = 0
            if settled >= 2:  # the same answer twice, half a second apart
                if errors:
                    raise CellError(f"{self.name}: {_cell_errors(errors)}")
                return
            if time.monotonic() > deadline:
                where = f"cell(s) {queued} still running or queued" if queued else f"cell(s) {pending} never ran"
                raise NotebookTimeout(f"{self.name}: Run All Cells did not finish within {timeout:.0f} s: {where}; "
                                      f"kernel {state['kernel']} (raise VAE_BROWSER_RUN_TIMEOUT if it is only slow)")

    def _click_run_all(self, through: int | None = None) -> float:
        self.page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
        if through is not None:      # select the cell after ``through``: everything above it runs
            self.page.evaluate(_SELECT_CELL_JS, [self.relpath, through + 1])
        self.page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^\s*Run\s*$")).click()
        command = "runmenu:run-all" if through is None else "notebook:run-all-above"
        self.page.locator(f'.lm-Menu-item[data-command="{command}"]').click()
        return time.monotonic()

    def check_no_errors(self, when: str) -> None:
        errors = [c for c in self.state()["cells"] if c["errors"]]
        if errors:
            raise CellError(f"{self.name} ({when}): {_cell_errors(errors)}")

    # -- sliders
    def sliders(self, timeout: float) -> list[SliderResult]:
        """Every slider on the page, each with its explorer; waits for each explorer's first picture."""
        found = [SliderResult(index=s["index"], explorer=s["explorer"], cell=s["cell"], label=s["label"],
                              kind=s["kind"], options=s["options"])
                 for s in self.page.evaluate(_SLIDERS_JS, self.relpath) if not s["disabled"]]
        if not found:
            raise NoPicture(f"{self.name}: its source builds sliders but none was rendered on the page "
                            "(is the ipywidgets JupyterLab extension installed?)")
        for s in found:
            if s.explorer < 0:
                raise NoPicture(f"{self.name}: {_describe(s)} has no ipywidgets Output next to it to redraw")
        deadline = time.monotonic() + timeout
        for s in found:
            while not self.slider_state(s)["images"]:
                errors = self.slider_state(s)["errors"]
                if errors:
                    raise CellError(f"{self.name}: the output of {_describe(s)} shows an error:\n{errors[0]}")
                if time.monotonic() > deadline:
                    raise NoPicture(f"{self.name}: {_describe(s)}: its explorer shows no picture (<img>) "
                                    f"within {timeout:.0f} s")
                time.sleep(0.25)
        return found

    def slider_state(self, s: SliderResult) -> dict:
        return self.page.evaluate(_SLIDER_STATE_JS, [s.index, s.explorer])

    def move(self, s: SliderResult, timeout: float) -> None:
        """Move one slider with the keyboard (or pick a dropdown's next option); check that its readout
        and its picture both change."""
        before = self.slider_state(s)
        s.before = before["readout"]
        if s.kind == "dropdown":
            self._choose_next(s)
            start, now = time.monotonic(), self.slider_state(s)
            while now["readout"] == s.before and time.monotonic() - start < 2:
                time.sleep(0.1)
                now = self.slider_state(s)
            if now["readout"] == s.before:
                raise ReadoutUnchanged(f"{self.name}: {_describe(s)}: it still shows {s.before!r} after choosing "
                                       "another option")
            s.key, s.after = "select", now["readout"]
            self._wait_redrawn(s, before, start, timeout)
            return
        handle = self.page.locator(f'[data-vae-slider="{s.index}"] .noUi-handle').first
        handle.scroll_into_view_if_needed()
        start = None
        for key in SLIDER_KEYS:
            handle.focus()
            handle.press(key)
            start = time.monotonic()
            changed = False
            while time.monotonic() - start < 2:
                now = self.slider_state(s)
                if now["readout"] != s.before:
                    changed = True
                    break
                time.sleep(0.1)
            if changed:
                s.key, s.after = key, now["readout"]
                break
        else:
            raise ReadoutUnchanged(f"{self.name}: {_describe(s)}: the readout stayed {s.before!r} after "
                                   f"pressing {', '.join(SLIDER_KEYS)} on its focused handle")
        self._wait_redrawn(s, before, start, timeout)

    def _choose_next(self, s: SliderResult) -> None:
        select = self.page.locator(f'[data-vae-slider="{s.index}"] select').first
        select.scroll_into_view_if_needed()
        current = select.evaluate("el => el.selectedIndex")
        if s.options < 2:
            raise ReadoutUnchanged(f"{self.name}: {_describe(s)} has fewer than two options to choose from")
        select.select_option(index=(current + 1) % s.options)

    def _wait_redrawn(self, s: SliderResult, before: dict, start: float, timeout: float) -> None:
        """After a control moved: wait until its explorer shows a new picture (or fail), then settle."""
        while True:
            now = self.slider_state(s)
            if now["errors"]:
                raise CellError(f"{self.name}: after moving {_describe(s)} from {s.before} to {s.after} its "
                                f"output shows an error:\n{now['errors'][0]}")
            if now["images"] and now["images"] != before["images"]:
                s.redraw_s = time.monotonic() - start
                break
            if time.monotonic() - start > timeout:
                shown = "no picture" if not now["images"] else "the same image data as before"
                raise PictureNotRedrawn(
                    f"{self.name}: picture not redrawn: {_describe(s)} moved from {s.before} to {s.after} "
                    f"({s.key}) but after {timeout:.0f} s its explorer shows {shown} "
                    "(does the draw function use this slider's value?)")
            time.sleep(0.1)
        self.wait_settled(s, timeout)

    def wait_settled(self, s: SliderResult, timeout: float) -> None:
        """Wait until the kernel is idle and the picture is stable, so the next slider starts clean."""
        deadline, last, stable = time.monotonic() + timeout, None, 0
        while time.monotonic() < deadline:
            images = self.slider_state(s)["images"]
            idle = self.state().get("kernel") == "idle"
            stable = stable + 1 if (idle and images and images == last) else 0
            if stable >= 2:
                return
            last = images
            time.sleep(0.25)

    # -- pictures of the page
    def screenshot(self, path: Path, explorer: int | None = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if explorer is not None:
            self.page.evaluate(
                """(e) => { const box = document.querySelector(`[data-vae-explorer="${e}"]`);
                            const cell = box && box.closest('.jp-Cell');
                            if (cell) cell.scrollIntoView({block: 'start'}); }""", explorer)
            time.sleep(0.3)
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        if self.page is not None:
            try:
                self.page.close()
            finally:
                self.page = None


def _cell_errors(cells: list[dict]) -> str:
    parts = []
    for c in cells:
        parts.append(f"cell {c['index']} shows an error:\n" + "\n".join(dict.fromkeys(c["errors"])))
    return "\n".join(parts)


def exercise_notebook(server: LabServer, browser: Browser, relpath: str, screenshot: Path | None = None, *,
                      run_timeout_s: float | None = None, redraw_timeout_s: float | None = None,
                      open_timeout_s: float | None = None, through_last_explorer: bool = False) -> NotebookReport:
    """Open ``relpath`` (relative to the server's root), run all cells, move every slider, screenshot.

    ``through_last_explorer``: run only the cells up to the last one that builds sliders (the cells
    after it, which nbval runs in ``make test`` anyway, are not run a second time here).

    Raises a :class:`HarnessFailure` on the first problem (after saving the screenshot anyway, so
    there is something to look at). Always closes the page and shuts the notebook's kernel down.
    """
    run_timeout_s = run_timeout_s or run_timeout()
    redraw_timeout_s = redraw_timeout_s or redraw_timeout()
    open_timeout_s = open_timeout_s or start_timeout()
    session = NotebookSession(server, browser, relpath)
    report = NotebookReport(notebook=relpath)
    try:
        t0 = time.monotonic()
        session.open(open_timeout_s)
        report.open_s = time.monotonic() - t0
        t0 = time.monotonic()
        through = last_slider_cell(server.root / relpath) if through_last_explorer else None
        session.run_all(run_timeout_s, through=through if through is not None and through >= 0 else None)
        report.run_s = time.monotonic() - t0
        t0 = time.monotonic()
        report.sliders = session.sliders(redraw_timeout_s)
        for s in report.sliders:
            session.move(s, redraw_timeout_s)
        session.check_no_errors("after moving the sliders")
        report.interact_s = time.monotonic() - t0
        if screenshot is not None:
            report.screenshot = session.screenshot(screenshot)
        return report
    except HarnessFailure as failure:
        if screenshot is not None and session.page is not None:
            try:
                report.screenshot = session.screenshot(screenshot, explorer=None)
                failure.args = (f"{failure.args[0]}\n(screenshot of the failure: {report.screenshot})",)
            except Exception:  # noqa: BLE001 - the failure matters more than its picture
                pass
        if session.console_errors:
            failure.args = (failure.args[0] + "\nbrowser console errors:\n  "
                            + "\n  ".join(session.console_errors[-10:]),)
        raise
    finally:
        report.console_errors = list(session.console_errors)
        session.close()
        server.shutdown_kernels()
