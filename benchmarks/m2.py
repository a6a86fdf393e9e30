"""Kingma et al.'s M2 on every labelled set of notebook 11's few-label table.

    python -m benchmarks.m2                         # 10 and 100 labels per class, 5 labelled sets each
    python -m benchmarks.m2 --budgets 10 --seeds 0 1 --epochs 1

Notebook 11 trains M2 (``vae_lib.models.conditional.SemiSupervisedVAE``) for one labelled set only: every
unlabelled image runs its decoder once per class, so one model takes about as long as the rest of the
notebook. This command trains it, as the notebook does (latent 16, hidden 400, Adam 1e-3, batch 128,
``--epochs`` epochs, the split of ``semi_supervised_split``), for each labelled set that
``label_budget(train, n, seed)`` picks, and reports its classifier's test error, with the mean and
standard error over the sets. Results go to ``benchmarks/results/<device>-m2.json`` and ``.md``;
notebook 11 reads them.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import save_results
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.data import dataset_name, load_data
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"


def run(dataset: str, budgets: list[int], seeds: list[int], epochs: int, device, log=print) -> list[dict]:
    train, test = load_data(dataset, device=device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="m2-") as folder:
        for n in budgets:
            for seed in seeds:
                config = TrainConfig(dataset=dataset, model="m2", latent_dim=16, epochs=epochs, labels_per_class=n,
                                     label_seed=seed)
                model, history = train_or_load(config, train, test, folder=folder, progress=False, log=lambda *a: None)
                error = (model.predict(test.images) != test.labels.cpu()).double().mean().item()
                rows.append({"labels_per_class": n, "label_seed": seed, "test_error": error,
                             "test_loss": history.test_loss[-1], "seconds": sum(history.seconds)})
                log(f"{n:>3} labels per class, set {seed}: test error {error:.2%}  ({sum(history.seconds):.0f} s)")
    return rows


def summary(rows: list[dict]) -> dict[int, tuple[float, float, int]]:
    """Per budget: the mean test error, its standard error over the labelled sets, and their number."""
    out = {}
    for n in sorted({r["labels_per_class"] for r in rows}):
        e = torch.tensor([r["test_error"] for r in rows if r["labels_per_class"] == n], dtype=torch.float64)
        out[n] = (e.mean().item(), (e.std() / math.sqrt(len(e))).item() if len(e) > 1 else float("nan"), len(e))
    return out


def markdown(report: dict) -> str:
    lines = [
        f"### {report['device']}: M2 on notebook 11's labelled sets",
        "",
        f"{report['dataset']}, latent 16, hidden 400, {report['epochs']} epochs, Adam 1e-3, batch 128; torch {report['torch']}, "
        f"Python {report['python']}; {report['date']}. Test error of M2's classifier q(y|x) on the whole test set.",
        "",
        "| labels per class | labelled sets | test error, mean ± standard error | each set |",
        "|---|---:|---:|---|",
    ]
    for n, (mean, se, count) in summary(report["rows"]).items():
        each = ", ".join(f"{100 * r['test_error']:.1f}" for r in report["rows"] if r["labels_per_class"] == n)
        lines.append(f"| {n} | {count} | {100 * mean:.1f} ± {100 * se:.1f} % | {each} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.m2", description=__doc__.split("\n\n")[0])
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 100], help="labelled images per class")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="which labelled sets")
    p.add_argument("--epochs", type=int, default=2, help="epochs per model (default 2, as notebook 11)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 1 or any(n < 1 for n in args.budgets) or any(s < 0 for s in args.seeds):
        p.error("--epochs and --budgets must be positive, --seeds non-negative")
    dataset = dataset_name(args.dataset)
    device = get_device()
    report = {"device": describe_device(device), "dataset": dataset, "epochs": args.epochs, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "rows": run(dataset, args.budgets, args.seeds, args.epochs, device)}
    save_results(args.out, f"{device.type}-m2", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
