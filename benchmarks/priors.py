"""Notebook 12's table for several seeds: the standard prior, a mixture of Gaussians, the VampPrior and a
mixture fitted after training, at equal budget.

    python -m benchmarks.priors                       # seeds 0 1 2, the notebook's settings
    python -m benchmarks.priors --seeds 0 --epochs 2  # a quick look

Notebook 12 trains each prior once (seed 0). The differences between priors are a nat or less on a 2-D
latent space, about what a different seed moves them, so this command trains every prior for each seed,
as the notebook does (the textbook MLP, latent 2, hidden 400, Adam 1e-3, batch 128, ``--epochs`` epochs,
K components for every mixture; the VampPrior's pseudo-inputs started at training images, and once more
at the authors' default N(0.05, 0.01^2) as ``vamp-random``), measures each with
:func:`vae_lib.prior_report.measure_prior` on the same test images, and reports the mean and standard
error over the seeds of every number and of each prior's difference from the standard prior, paired by
seed. Models are cached in ``checkpoints/`` like the notebook's. Results go to
``benchmarks/results/<device>-priors.json`` and ``.md``; notebook 12 reads them.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks import save_results
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.data import dataset_name, load_data
from vae_lib.downstream import JudgeConfig, train_or_load_judge
from vae_lib.latent import aggregate_posterior_sample
from vae_lib.prior_report import measure_prior
from vae_lib.priors import fit_mixture, with_prior
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"
PRIORS = ("standard", "mog", "vamp", "vamp-random", "fitted")
#: The table's columns, in order: (key in measure_prior's dict, header, format).
COLUMNS = (("negative_elbo", "−ELBO", ".2f"), ("negative_iwae", "−IWAE_100", ".2f"), ("average KL", "KL", ".2f"),
           ("I_q", "I_q", ".2f"), ("KL(q(z) || p(z))", "KL(q(z) ‖ p(z))", ".3f"),
           ("samples in holes", "samples in holes", ".3f"), ("confident share", "judge: confident", ".3f"),
           ("effective classes", "judge: classes", ".2f"), ("Fréchet distance", "Fréchet distance", ".2f"))


def configs(dataset: str, seed: int, epochs: int, components: int) -> dict[str, TrainConfig]:
    """The trained priors' configurations for one seed (the fitted mixture reuses the standard one)."""
    base = {"dataset": dataset, "epochs": epochs, "seed": seed}
    return {"standard": TrainConfig(**base),
            "mog": TrainConfig(**base, prior="mog", prior_components=components),
            "vamp": TrainConfig(**base, prior="vamp", prior_components=components, prior_init="data"),
            "vamp-random": TrainConfig(**base, prior="vamp", prior_components=components)}


def fitted_twin(model, train_images: torch.Tensor, components: int, seed: int):
    """The standard model with a mixture fitted to one draw of its aggregate posterior per training image."""
    codes = aggregate_posterior_sample(model, train_images, torch.Generator().manual_seed(seed))
    return with_prior(model, fit_mixture(codes, components, generator=torch.Generator().manual_seed(seed)))


def run(dataset: str, seeds: list[int], epochs: int, components: int, n_eval: int, device, log=print) -> list[dict]:
    train, test = load_data(dataset, device=device)
    judge, _ = train_or_load_judge(JudgeConfig(dataset=dataset), train, test, log=None)
    rows = []
    for seed in seeds:
        models, seconds = {}, {}
        for name, config in configs(dataset, seed, epochs, components).items():
            models[name], history = train_or_load(config, train, test, progress=False, log=None)
            seconds[name] = sum(history.seconds)
        start = time.perf_counter()
        models["fitted"] = fitted_twin(models["standard"], train.images, components, seed)
        seconds["fitted"] = seconds["standard"] + time.perf_counter() - start
        for name in PRIORS:
            row = {"prior": name, "seed": seed, "train_seconds": seconds[name],
                   **measure_prior(models[name], test.images, train.images, judge, n_eval=n_eval, seed=seed)}
            rows.append(row)
            log(f"seed {seed}, {name:>8}: -ELBO {row['negative_elbo']:.2f}, -IWAE {row['negative_iwae']:.2f}, "
                f"KL(q(z)||p(z)) {row['KL(q(z) || p(z))']:.3f}, holes {row['samples in holes']:.3f}, "
                f"Frechet {row['Fréchet distance']:.2f}")
    return rows


def mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std() / math.sqrt(len(t))).item() if len(t) > 1 else float("nan")


def summary(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per prior and column: the mean over seeds and its standard error; and the difference from the
    standard prior, paired by seed (``"... - standard"``)."""
    out = {}
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["prior"], r["seed"]): r for r in rows}
    for name in PRIORS:
        out[name] = {key: mean_se([by[(name, s)][key] for s in seeds]) for key, _, _ in COLUMNS}
        out[name].update({f"{key} - standard": mean_se([by[(name, s)][key] - by[("standard", s)][key] for s in seeds])
                          for key, _, _ in COLUMNS})
    return out


def markdown(report: dict) -> str:
    seeds = sorted({r["seed"] for r in report["rows"]})
    s = summary(report["rows"])
    lines = [
        f"### {report['device']}: learned priors at equal budget (notebook 12)",
        "",
        f"{report['dataset']}, the textbook MLP (latent 2, hidden 400), {report['epochs']} epochs, Adam 1e-3, batch 128, "
        f"K = {report['components']} components for every mixture (vamp: pseudo-inputs started at training images; "
        f"vamp-random: at N(0.05, 0.01²) pixels); seeds {', '.join(map(str, seeds))}; "
        f"torch {report['torch']}, Python {report['python']}; {report['date']}. Bounds and KL split on the first "
        f"{report['n_eval']:,} test images (nats per image); 5,000 prior samples for the holes and the judge "
        "(confident share, effective classes, Fréchet distance in its features to 5,000 test images). "
        "Mean ± standard error over the seeds.",
        "",
        "| prior | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name in PRIORS:
        cells = [f"{s[name][k][0]:{f}} ± {s[name][k][1]:{f}}" for k, _, f in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Difference from the standard prior, paired by seed (mean ± standard error):", "",
              "| prior | " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name in PRIORS[1:]:
        cells = [f"{s[name][k + ' - standard'][0]:+{f}} ± {s[name][k + ' - standard'][1]:{f}}" for k, _, f in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.priors", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--epochs", type=int, default=10, help="epochs per model (default 10, as notebook 12)")
    p.add_argument("--components", type=int, default=50, help="K, the components of every mixture (default 50)")
    p.add_argument("--n-eval", type=int, default=1000, help="test images for the bounds and the KL split")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.components < 1 or args.n_eval < 2 or any(s < 0 for s in args.seeds):
        p.error("--epochs and --components must be positive, --n-eval at least 2, --seeds non-negative")
    dataset = dataset_name(args.dataset)
    device = get_device()
    report = {"device": describe_device(device), "dataset": dataset, "epochs": args.epochs,
              "components": args.components, "n_eval": args.n_eval, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "rows": run(dataset, args.seeds, args.epochs, args.components, args.n_eval, device)}
    save_results(args.out, f"{device.type}-priors", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
