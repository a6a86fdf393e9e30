"""The notebooks that nbval runs, kept for the website: ``pytest -p vae_lib.site_capture`` (the Makefile does it).

``make test``, ``make notebooks`` and ``make rehearsal`` run every notebook under nbval with this pytest
plugin. Each notebook whose code cells all ran and passed is stored in the website's execution cache
(``outputs/site-cache/<data set>/``) under the key that ``make site`` checks (:func:`vae_lib.site.cache_key`:
the notebook's code cells, the library's code, the data set), so ``make site`` right after ``make test``
executes no notebook: it only stages the pages and runs Sphinx.

**The same outputs as ``make site`` would store.** What nbval keeps of a cell (``IPyNbCell.test_outputs``)
is not what a notebook client keeps: it has no widget state, the picture a slider explorer draws inside its
``ipywidgets.Output`` comes as a plain output of the cell (before the explorer itself), and ``clear_output``
is ignored. So the plugin records the kernel messages that nbval reads for each cell and, once the cell has
passed, replays them through nbclient's own message handling (``NotebookClient.process_message``, what
``make site`` executes with). The stored notebook then holds the widget state and each explorer's picture
inside its ``Output`` as an nbclient run holds them, and :func:`vae_lib.site.freeze_widgets` makes the same
page of it: the note "Interactive in JupyterLab ..." above the picture, no progress bars. The replay only
reads: nothing is sent to the kernel, so the run under test is the same with or without the plugin.

**Never a partial or failed notebook.** A notebook is stored only when every one of its code cells passed
(a failed, skipped or deselected cell, or one whose messages the plugin did not see, leaves the cache as it
was), and only when the library did not change while it ran.

A plugin module rather than a ``conftest.py`` in ``notebooks/``: that folder is the learner's (``make lab``
opens it), and here the plugin is library code, tested by ``tests/test_site.py``, which a run loads by name.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from . import site

#: nbclient's Output-widget mimic sends its outputs back to the kernel; the replay runs after the cell, so
#: those messages go nowhere (the kernel's ``Output.outputs`` stays empty, as it does under nbval alone).
_NO_KERNEL = SimpleNamespace(session=SimpleNamespace(msg=lambda *args, **kwargs: {}),
                             shell_channel=SimpleNamespace(send=lambda msg: None))
_CAPTURES = pytest.StashKey[dict]()
_STORED = pytest.StashKey[list]()


class NotebookCapture:
    """One notebook as nbval runs it, cell by cell, rebuilt as an nbclient run would have stored it.

    ``nb`` is the notebook as nbval read it (its code is what runs); ``library`` the library's fingerprint
    when it started.
    """

    def __init__(self, nb, library: str):
        from nbclient import NotebookClient

        self.nb = copy.deepcopy(nb)
        self.code = [i for i, cell in enumerate(self.nb.cells) if cell.cell_type == "code"]
        for i in self.code:
            self.nb.cells[i].outputs, self.nb.cells[i].execution_count = [], None
        self.client = NotebookClient(self.nb, store_widget_state=True, record_timing=False)
        self.client.kc = _NO_KERNEL
        self.library = library
        self.passed: set[int] = set()

    def replay(self, cell_num: int, msg_id: str | None, messages: list[dict]) -> bool:
        """Rebuild code cell ``cell_num``'s outputs from the iopub ``messages`` of its request ``msg_id``.

        Returns whether the cell's end (the kernel's idle status) was among them, i.e. whether the
        outputs are whole; only then does the cell count as passed.
        """
        from nbclient.exceptions import CellExecutionComplete

        index = self.code[cell_num]
        cell = self.nb.cells[index]
        cell.outputs = []
        self.client.clear_before_next_output = False
        for msg in messages:
            if msg_id is None or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            try:
                self.client.process_message(msg, cell, index)
            except CellExecutionComplete:
                self.passed.add(cell_num)
                return True
        return False

    def complete(self) -> bool:
        """Whether every code cell of the notebook has run and passed."""
        return self.passed == set(range(len(self.code)))

    def notebook(self):
        """The executed notebook: outputs, widget state and execution counts as nbclient stores them."""
        if not self.complete():
            raise ValueError(f"cells {sorted(set(range(len(self.code))) - self.passed)} have not passed")
        self.client.set_widgets_metadata()
        count = 0
        for i in self.code:                 # nbclient numbers the cells it runs; it skips empty ones
            cell = self.nb.cells[i]
            if cell.source.strip():
                count += 1
                cell.execution_count = count
            else:
                cell.outputs, cell.execution_count = [], None
        return self.nb


class _Recorder:
    """The iopub messages nbval reads while one cell runs, and the id of the cell's execute request."""

    def __init__(self, notebook):
        self.messages: list[dict] = []
        self.msg_id: str | None = None
        read, kernel = notebook.get_kernel_message, notebook.kernel
        execute = kernel.execute_cell_input

        def get_kernel_message(timeout=None, stream="iopub"):
            msg = read(timeout=timeout, stream=stream)
            if stream == "iopub":
                self.messages.append(msg)
            return msg

        def execute_cell_input(*args, **kwargs):
            self.msg_id = execute(*args, **kwargs)
            return self.msg_id

        notebook.get_kernel_message, kernel.execute_cell_input = get_kernel_message, execute_cell_input

    def reset(self) -> None:
        self.messages, self.msg_id = [], None


def _is_cell(item) -> bool:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:                     # nbval is not installed: there is nothing to capture
        return False
    return isinstance(item, IPyNbCell)


def pytest_addoption(parser):
    parser.addoption("--site-cache", default=None, type=Path,
                     help=f"where to store the notebooks nbval ran, for make site (default: {site.CACHE_DIR})")


def pytest_configure(config):
    config.stash[_CAPTURES] = {}
    config.stash[_STORED] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """Before a cell runs: start recording its messages (the kernel has started in the notebook's setup)."""
    if not _is_cell(item):
        return
    notebook = item.parent
    captures = item.config.stash[_CAPTURES]
    if notebook.nodeid not in captures:
        captures[notebook.nodeid] = NotebookCapture(notebook.nb, site.library_fingerprint())
    if getattr(notebook, "_site_recorder", None) is None:
        notebook._site_recorder = _Recorder(notebook)
    notebook._site_recorder.reset()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """After a cell ran: replay its messages if it passed; store the notebook once every cell has."""
    outcome = yield
    if call.when != "call" or not _is_cell(item):
        return
    report = outcome.get_result()
    captures = item.config.stash[_CAPTURES]
    capture = captures.get(item.parent.nodeid)
    recorder = getattr(item.parent, "_site_recorder", None)
    if capture is None or recorder is None:
        return
    passed = report.passed and not hasattr(report, "wasxfail")
    if not passed or not capture.replay(item.cell_num, recorder.msg_id, recorder.messages):
        if passed:                                   # the cell passed, but its messages were not all seen
            warnings.warn(f"{item.nodeid}: its outputs were not captured whole; the notebook is not stored "
                          "for make site", stacklevel=1)
        captures[item.parent.nodeid] = None          # this notebook is not stored; its later cells change nothing
        return
    recorder.reset()
    if capture.complete():
        captures.pop(item.parent.nodeid)
        _store(item, capture)


def _store(item, capture: NotebookCapture) -> None:
    name = Path(str(item.parent.path)).name
    if site.library_fingerprint() != capture.library:
        warnings.warn(f"{name} is not stored for make site: vae_lib changed while it ran", stacklevel=1)
        return
    cache = item.config.getoption("site_cache") or site.CACHE_DIR
    nb = capture.notebook()
    path = site.store_executed(nb, name, site.cache_key(nb, capture.library), cache)
    item.config.stash[_STORED].append(path)


def pytest_terminal_summary(terminalreporter, config):
    stored = config.stash.get(_STORED, [])
    if stored:
        terminalreporter.write_line(f"{len(stored)} executed notebook(s) stored for make site in {stored[0].parent}")
