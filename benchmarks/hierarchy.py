"""Notebook 13's table for several seeds: a one-level VAE, two-level VAEs with bottom-up and top-down
inference, and the remedies (warm-up, free bits) for each, at equal budget.

    python -m benchmarks.hierarchy                       # seeds 0 1 2, the notebook's settings
    python -m benchmarks.hierarchy --seeds 0 --epochs 2  # a quick look

Notebook 13 trains each model once (seed 0), and its differences are a nat or two. This command trains
every model of :data:`vae_lib.hierarchy_report.MODELS` for each seed with the notebook's settings
(:func:`vae_lib.hierarchy_report.table_configs`: layers of 16 and 8 dimensions or one of 24, blocks of
256 units, Adam 1e-3, batch 128), measures each with :func:`vae_lib.hierarchy_report.measure_hierarchy`
on the same test images, and reports the mean and standard error over the seeds, and each model's
-ELBO difference from the one-level model paired by seed. Models are cached in ``checkpoints/`` like
the notebook's. Results go to ``benchmarks/results/<device>-hierarchy.json`` and ``.md``; notebook 13
reads them.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from benchmarks import save_results
from vae_lib.checkpoints import train_or_load
from vae_lib.data import dataset_name, load_data
from vae_lib.hierarchy_report import (FREE_BITS, HIDDEN, INFORMATIVE_KL, LAYERS, MODELS, measure_hierarchy,
                                      table_configs)
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"


def run(dataset: str, seeds: list[int], epochs: int, n_eval: int, device, log=print) -> list[dict]:
    train, test = load_data(dataset, device=device)
    rows = []
    for seed in seeds:
        for name, config in table_configs(dataset, epochs, seed).items():
            model, history = train_or_load(config, train, test, progress=False, log=None)
            row = {"model": name, "seed": seed, "train_seconds": sum(history.seconds),
                   **measure_hierarchy(model, test.images, n_eval=n_eval, seed=seed)}
            rows.append(row)
            log(f"seed {seed}, {name:>22}: -ELBO {row['negative_elbo']:.2f}, -IWAE {row['negative_iwae']:.2f}, "
                f"KL per layer {[round(k, 2) for k in row['kl_layers']]}, active {row['active_layers']}")
    return rows


def mean_se(values) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std() / math.sqrt(len(t))).item() if len(t) > 1 else float("nan")


def markdown(report: dict) -> str:
    rows = report["rows"]
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["model"], r["seed"]): r for r in rows}

    def cell(name, get, fmt=".2f"):
        m, s = mean_se([get(by[(name, seed)]) for seed in seeds])
        return f"{m:{fmt}} ± {s:{fmt}}"

    lines = [
        f"### {report['device']}: hierarchical VAEs at equal budget (notebook 13)",
        "",
        f"{report['dataset']}, Bernoulli likelihood of the grey levels; layers z₁, z₂ of {LAYERS[0]} and {LAYERS[1]} "
        f"dimensions (one level: {sum(LAYERS)}), blocks of {HIDDEN} units; {report['epochs']} epochs, Adam 1e-3, "
        f"batch 128; warm-up over the first half of the epochs; free bits {FREE_BITS} nats per dimension; seeds "
        f"{', '.join(map(str, seeds))}; torch {report['torch']}, Python {report['python']}; {report['date']}. "
        f"Bounds on the first {report['n_eval']:,} test images (nats per image); active units of Burda et al. "
        f"(Var_x E_q[z|x] > 0.01); informative units: mean KL above {INFORMATIVE_KL} nats. Mean ± standard error "
        "over the seeds.",
        "",
        "| model | −ELBO | −IWAE_100 | −ELBO − one level | KL z₁ | KL z₂ | active z₁ | active z₂ | informative z₁ "
        "| informative z₂ | I_q(x; z₂) | KL(q(z₂) ‖ p(z₂)) |",
        "|---|" + "---:|" * 11,
    ]
    for name in MODELS:
        two = len(by[(name, seeds[0])]["kl_layers"]) == 2

        def top(get, fmt=".2f", name=name, two=two):
            return cell(name, get, fmt) if two else "–"
        lines.append(" | ".join([
            f"| {name}", cell(name, lambda r: r["negative_elbo"]), cell(name, lambda r: r["negative_iwae"]),
            cell(name, lambda r: r["negative_elbo"] - by[("one level", r["seed"])]["negative_elbo"]),
            cell(name, lambda r: r["kl_layers"][0]), top(lambda r: r["kl_layers"][1]),
            cell(name, lambda r: r["active_layers"][0], ".1f"), top(lambda r: r["active_layers"][1], ".1f"),
            cell(name, lambda r: r["informative_layers"][0], ".1f"), top(lambda r: r["informative_layers"][1], ".1f"),
            top(lambda r: r["top_I_q"]), top(lambda r: r["top_marginal_kl"])]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hierarchy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--epochs", type=int, default=6, help="epochs per model (default 6, as notebook 13)")
    p.add_argument("--n-eval", type=int, default=1000, help="test images for the bounds and the diagnostics")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.n_eval < 2 or any(s < 0 for s in args.seeds):
        p.error("--epochs must be positive, --n-eval at least 2, --seeds non-negative")
    dataset = dataset_name(args.dataset)
    device = get_device()
    report = {"device": describe_device(device), "dataset": dataset, "epochs": args.epochs, "n_eval": args.n_eval,
              "torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "rows": run(dataset, args.seeds, args.epochs, args.n_eval, device)}
    save_results(args.out, f"{device.type}-hierarchy", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
