"""Benchmarks of the course's training speed (``make bench``; see benchmarks/run.py) and the experiments
the notebooks cite, each a ``python -m benchmarks.<name>`` command writing to ``benchmarks/results/``."""
from __future__ import annotations

import json
from pathlib import Path


def save_results(folder: Path, stem: str, report: dict, text: str) -> None:
    """Write ``report`` to ``folder/stem.json`` and its Markdown ``text`` to ``folder/stem.md``, and print
    the Markdown and where both went."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (folder / f"{stem}.md").write_text(text)
    print()
    print(text)
    print(f"written to {folder / stem}.json and .md")
