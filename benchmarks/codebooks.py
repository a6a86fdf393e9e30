"""Notebook 14's tables for several seeds: codebook health of the plain VQ-VAE, each remedy, all three and
FSQ, and the bounds in bits per dimension beside the continuous VAE with the same encoder and decoder.

    python -m benchmarks.codebooks                       # seeds 0 1 2, the notebook's settings (1 epoch)
    python -m benchmarks.codebooks --seeds 0 --epochs 10 # the notebook's FULL_RUN, one seed

Notebook 14 trains each model once (seed 0). This command trains every model of
:data:`vae_lib.codebooks.MODELS` for each seed with the notebook's settings
(:func:`vae_lib.codebooks.table_configs`), counts each quantizer's codes over the training split
(:func:`vae_lib.codebooks.codebook_health`), fits the PixelCNN prior over the codes of the model with all
three remedies, and bounds -log P(x) on the same test images (:func:`vae_lib.codebooks.bounds_table`).
Models are cached in ``checkpoints/`` like the notebook's. Results go to
``benchmarks/results/<device>-codebooks.json`` and ``.md``; notebook 14 cites them.
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
from vae_lib.codebooks import (CHANNELS, CODE_DIM, CODES, LIKELIHOOD, MODELS, SPATIAL_DIM, PriorConfig, bounds_table,
                               codebook_health, table_configs, train_or_load_code_prior)
from vae_lib.models.vq import FSQ_LEVELS
from vae_lib.data import dataset_name, load_data
from vae_lib.models import UniformCodes
from vae_lib.utils import REPO_ROOT, describe_device, get_device, set_seed

RESULTS = REPO_ROOT / "benchmarks" / "results"


def run(dataset: str, seeds: list[int], epochs: int, prior_epochs: int, n_eval: int, iwae_k: int, device,
        log=print) -> list[dict]:
    train, test = load_data(dataset, device=device)
    rows = []
    for seed in seeds:
        configs = table_configs(dataset, epochs, seed)
        models, seconds = {}, {}
        for name, config in configs.items():
            models[name], history = train_or_load(config, train, test, progress=False, log=None)
            seconds[name] = sum(history.seconds)
        set_seed(seed)
        prior, prior_history = train_or_load_code_prior(configs["all three"], models["all three"],
                                                        PriorConfig(epochs=prior_epochs, seed=seed), train, test,
                                                        progress=False, log=None)
        uniform = UniformCodes(CODES)
        bounds = bounds_table({n: models[n] for n in ("all three", "FSQ", "continuous")},
                              {"all three, uniform prior": ("all three", uniform), "FSQ, uniform prior": ("FSQ", uniform),
                               "all three, PixelCNN prior": ("all three", prior)},
                              test.images[:n_eval], iwae_k, seed)
        for name in MODELS:
            row = {"model": name, "seed": seed, "train_seconds": seconds[name]}
            if name != "continuous":
                h = codebook_health(models[name], train.images)
                row.update({k: h[k] for k in ("used", "dead", "perplexity", "batch_perplexity", "batch_used")})
            rows.append(row)
        rows.append({"model": "bounds", "seed": seed, "prior_seconds": sum(prior_history.seconds),
                     "bits_per_dim": {k: v["bits_per_dim"] for k, v in bounds.items()}})
        log(f"seed {seed}: " + ", ".join(f"{r['model']} {r['used']}" for r in rows if r["seed"] == seed and "used" in r)
            + "; bits/dim " + ", ".join(f"{k} {v['bits_per_dim']:.3f}" for k, v in bounds.items()))
    return rows


def mean_se(values, fmt: str = ".3f") -> str:
    t = torch.tensor(values, dtype=torch.float64)
    se = (t.std() / math.sqrt(len(t))).item() if len(t) > 1 else float("nan")
    return f"{t.mean().item():{fmt}} ± {se:{fmt}}"


def markdown(report: dict) -> str:
    rows = report["rows"]
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["model"], r["seed"]): r for r in rows}
    lines = [
        f"### {report['device']}: codebook health and bounds at equal budget (notebook 14)",
        "",
        f"{report['dataset']}, {LIKELIHOOD} likelihood; the grid encoder and decoder with {CHANNELS}/{2 * CHANNELS} "
        f"feature maps; K = {CODES} codes of {CODE_DIM} numbers (FSQ: levels {' x '.join(map(str, FSQ_LEVELS[CODES]))}); "
        f"the continuous VAE {SPATIAL_DIM} Gaussian numbers per position; {report['epochs']} epoch(s) per model, "
        f"Adam 1e-3, batch 128 (the course's fit); the PixelCNN prior {report['prior_epochs']} epoch(s); "
        f"seeds {', '.join(map(str, seeds))}; "
        f"torch {report['torch']}, Python {report['python']}; {report['date']}. Codes counted over the whole training "
        f"split; bounds on the first {report['n_eval']:,} test images. Mean ± standard error over the seeds.",
        "",
        "| model | codes used | dead codes | perplexity (epoch) | perplexity (mean per batch) | codes used (mean per batch) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in MODELS:
        if name == "continuous":
            continue
        cells = [mean_se([by[(name, s)][k] for s in seeds], ".1f")
                 for k in ("used", "dead", "perplexity", "batch_perplexity", "batch_used")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Codes used by each seed: " + "; ".join(
        f"{name} " + ", ".join(str(by[(name, s)]["used"]) for s in seeds) for name in MODELS if name != "continuous") + ".",
        "", "| bound on −log P(x) | bits/dim |", "|---|---:|"]
    for key in by[("bounds", seeds[0])]["bits_per_dim"]:
        lines.append(f"| {key} | {mean_se([by[('bounds', s)]['bits_per_dim'][key] for s in seeds])} |")
    gain = [by[("bounds", s)]["bits_per_dim"]["all three, uniform prior"]
            - by[("bounds", s)]["bits_per_dim"]["all three, PixelCNN prior"] for s in seeds]
    iwae = next(k for k in by[("bounds", seeds[0])]["bits_per_dim"] if k.startswith("continuous, -IWAE"))
    gap = [by[("bounds", s)]["bits_per_dim"]["all three, PixelCNN prior"] - by[("bounds", s)]["bits_per_dim"][iwae]
           for s in seeds]
    lines += ["", f"PixelCNN prior against the uniform one: {mean_se(gain)} bits/dim tighter. VQ-VAE (PixelCNN prior) "
              f"minus the continuous VAE's {iwae.split(', ')[1]}: {mean_se(gap)} bits/dim (by seed: "
              f"{', '.join(f'{g:+.3f}' for g in gap)})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.codebooks", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--epochs", type=int, default=1, help="epochs per model (default 1, as notebook 14)")
    p.add_argument("--prior-epochs", type=int, default=1, help="epochs of the PixelCNN prior (default 1)")
    p.add_argument("--n-eval", type=int, default=2000, help="test images for the bounds")
    p.add_argument("--iwae-k", type=int, default=100, help="importance samples for the continuous VAE's -IWAE_k")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.prior_epochs < 1 or args.n_eval < 2 or args.iwae_k < 1 or any(s < 0 for s in args.seeds):
        p.error("--epochs, --prior-epochs and --iwae-k must be positive, --n-eval at least 2, --seeds non-negative")
    dataset = dataset_name(args.dataset)
    device = get_device()
    report = {"device": describe_device(device), "dataset": dataset, "epochs": args.epochs,
              "prior_epochs": args.prior_epochs, "n_eval": args.n_eval, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "rows": run(dataset, args.seeds, args.epochs, args.prior_epochs, args.n_eval, args.iwae_k, device)}
    # The notebook cites cpu-codebooks.md (Fashion-MNIST, 1 epoch, the prior 1 epoch): other settings get their own files.
    suffix = ("" if dataset == "fashion-mnist" else f"-{dataset}") + ("" if args.epochs == 1 else f"-e{args.epochs}") \
        + ("" if args.prior_epochs == 1 else f"-p{args.prior_epochs}")
    save_results(args.out, f"{device.type}-codebooks{suffix}", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
