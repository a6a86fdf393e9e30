"""A notebook's FULL_RUN, executed once and stored, so that its exercise can cite what it measured.

    python -m benchmarks.full_run 08            # notebook 08 with FULL_RUN = True (about 15 minutes on a 2-core CPU)
    python -m benchmarks.full_run 09 --dataset fashion-mnist

Several notebooks have a ``FULL_RUN = False`` switch in their setup cell: longer training that does not
fit the notebook's time budget. This command executes a copy of the notebook with the switch on, in a
fresh kernel, in the notebooks' folder (so checkpoints and data are shared as in any run; figures go to
a temporary folder), and writes every printed line and every table the notebook displayed to
``benchmarks/results/full-run-<NN>.md``, with the date, the data set, the machine and the time it took.
A notebook without the switch is refused.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from vae_lib.data import dataset_name
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"
NOTEBOOKS = REPO_ROOT / "notebooks"
SWITCH = "FULL_RUN = False"


def notebook_path(number: str) -> Path:
    """The notebook whose name starts with ``number`` (e.g. "08"), or a ValueError that lists them."""
    matches = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    if len(matches) != 1:
        names = ", ".join(p.name for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
        raise ValueError(f"no single notebook numbered {number!r}; the notebooks are {names}")
    return matches[0]


def switched_on(nb) -> None:
    """Turn ``FULL_RUN = False`` on in the notebook's setup cell, in place; ValueError if it has none."""
    for cell in nb.cells:
        if cell.cell_type == "code" and SWITCH in cell.source:
            cell.source = cell.source.replace(SWITCH, "FULL_RUN = True", 1)
            return
    raise ValueError(f"the notebook has no `{SWITCH}` switch in a code cell: it has no full run")


def outputs_as_markdown(nb) -> str:
    """Every printed line (as code blocks) and every displayed Markdown table, in the order of the cells."""
    parts = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        texts = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                texts.append(("text", out["text"]))
            elif out.get("output_type") in ("display_data", "execute_result") and "text/markdown" in out.get("data", {}):
                texts.append(("markdown", out["data"]["text/markdown"]))
        lines = [t for t in texts if t[1].strip()]
        if lines:
            parts.append(f"**Cell {i}**\n")
            for kind, text in lines:
                parts.append(text.rstrip() + "\n" if kind == "markdown" else "```\n" + text.rstrip() + "\n```\n")
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.full_run", description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", help="the notebook's number, e.g. 08")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--timeout", type=int, default=7200, help="seconds one cell may run (default 7200)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the Markdown result")
    args = p.parse_args(argv)
    import nbformat
    from nbclient import NotebookClient

    try:
        path = notebook_path(args.notebook)
        nb = nbformat.read(path, as_version=4)
        switched_on(nb)
    except ValueError as err:
        p.error(str(err))
    dataset = dataset_name(args.dataset)
    os.environ["VAE_DATASET"] = dataset
    os.environ.setdefault("VAE_FIGURES_DIR", tempfile.mkdtemp(prefix="full-run-figures-"))
    start = time.perf_counter()
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    minutes = (time.perf_counter() - start) / 60
    header = (f"### {path.name} with FULL_RUN = True\n\n`python -m benchmarks.full_run {args.notebook}` on {dataset}, "
              f"{describe_device(get_device(verbose=False))}, {time.strftime('%Y-%m-%d')}: {minutes:.1f} minutes. "
              "What the notebook printed and displayed, cell by cell (cells are numbered from 0).\n\n")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"full-run-{args.notebook}.md"
    target.write_text(header + outputs_as_markdown(nb))
    print(f"{path.name}: {minutes:.1f} minutes; written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
