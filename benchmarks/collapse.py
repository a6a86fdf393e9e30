"""Notebook 10's remedies for posterior collapse, all six, at the notebook's budget and in longer runs.

    python -m benchmarks.collapse                       # both settings, 6 remedies, short and long runs
    python -m benchmarks.collapse --long-epochs 6 --settings b

Notebook 10 trains two settings with the plain ELBO and three remedies within its time budget:
(a) the seed's MLP with a 32-dimensional code on grey levels, 3 epochs; (b) a MADE decoder on
binarized pixels, 2 epochs; both at learning rate 3e-3. This command adds the two remedies that do
not fit that budget, cyclical annealing (Fu et al., 2019; 4 cycles, each ramping over its first half)
and capacity annealing (Burgess et al., 2018; the KL pulled towards a capacity rising to 25 nats,
gamma 1000), and repeats all six in a longer run (``--long-epochs``, 10 by default), where the
warm-up ends halfway instead of at the last epoch. Each model is trained from seed 0 with the
course's ``fit`` (through ``train_or_load``, in a temporary folder) and evaluated on the test split
(binarized once for (b)): the rate, the dimensions above 0.1 nats, I_q(x; z) from the ELBO surgery,
and the test -ELBO with its cost against the plain ELBO. Results go to
``benchmarks/results/<device>-collapse.json`` and ``.md``; notebook 10 reads them.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import save_results
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.data import Split, dataset_name, load_data
from vae_lib.diagnostics import elbo_surgery, kl_per_dimension
from vae_lib.likelihoods import binarize
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"
LATENT, LR, FREE_BITS, SMALL_BETA, CYCLES, CAPACITY, GAMMA = 32, 3e-3, 0.25, 0.2, 4, 25.0, 1000.0
SHORT = {"a": 3, "b": 2}
SETTINGS = {"a": "the seed's MLP, grey levels", "b": "MADE decoder, binarized pixels"}


def remedies(epochs: int) -> dict[str, dict]:
    """The six ways of training, as TrainConfig fields; the warm-up lasts the whole run or half a long one."""
    warmup = epochs if epochs <= 3 else epochs // 2
    return {"plain ELBO": {}, f"warm-up ({warmup} epochs)": {"warmup_epochs": warmup},
            f"free bits λ = {FREE_BITS:g}": {"free_bits": FREE_BITS}, f"β = {SMALL_BETA:g}": {"beta": SMALL_BETA},
            f"cyclical ({CYCLES} cycles)": {"cycles": CYCLES},
            f"capacity (C to {CAPACITY:g} nats, γ = {GAMMA:g})": {"capacity": CAPACITY, "capacity_gamma": GAMMA}}


def config(setting: str, dataset: str, epochs: int, **remedy) -> TrainConfig:
    if setting == "a":
        return TrainConfig(dataset=dataset, latent_dim=LATENT, epochs=epochs, lr=LR, **remedy)
    return TrainConfig(dataset=dataset, model="made", latent_dim=LATENT, hidden_dim=500, epochs=epochs, lr=LR,
                       likelihood="binarized-bernoulli", **remedy)


def run(train: Split, test: Split, settings: list[str], long_epochs: int, log=print) -> list[dict]:
    """Train and evaluate every remedy of every setting, short and long; one row per model."""
    test_binary = test.with_images(binarize(test.images, torch.Generator().manual_seed(2)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="collapse-") as folder:
        for setting in settings:
            images = test.images if setting == "a" else test_binary.images
            for epochs in sorted({SHORT[setting], long_epochs}):
                plain = None
                for name, fields in remedies(epochs).items():
                    cfg = config(setting, train.dataset, epochs, **fields)
                    model, history = train_or_load(cfg, train, test if setting == "a" else test_binary, folder=folder,
                                                   progress=False, log=lambda *a: None)
                    kl = kl_per_dimension(model, images)
                    surgery = elbo_surgery(model, images, n_samples=2000, generator=torch.Generator().manual_seed(0))
                    loss = history.test_loss[-1]
                    plain = loss if plain is None else plain
                    rows.append({"setting": setting, "epochs": epochs, "remedy": name, "rate": surgery.average_kl,
                                 "dims_above_0.1": int((kl > 0.1).sum()), "mutual_information": surgery.mutual_information,
                                 "test_loss": loss, "cost_vs_plain": loss - plain, "seconds": sum(history.seconds)})
                    log(f"({setting}) {epochs:>2} epochs  {name:<34} rate {surgery.average_kl:6.2f}  "
                        f"dims>0.1 {rows[-1]['dims_above_0.1']:>2}  I_q {surgery.mutual_information:5.2f}  "
                        f"-ELBO {loss:7.2f}  cost {loss - plain:+6.2f}")
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"### {report['device']}: posterior collapse, six remedies",
        "",
        f"{report['dataset']}, latent {LATENT}, Adam {LR:g}, batch 128, seed 0, the course's fit; torch {report['torch']}, "
        f"Python {report['python']}; {report['date']}. (a) {SETTINGS['a']}; (b) {SETTINGS['b']}. Rate, I_q(x; z) "
        "(ELBO surgery, 2,000 draws; its ceiling is log N = log of the test images) and the test -ELBO in nats per "
        "image; cost: the -ELBO against the plain ELBO of the same setting and length.",
        "",
        "| setting | epochs | remedy | rate | dims > 0.1 nats | I_q(x; z) | test −ELBO | cost vs plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| ({r['setting']}) | {r['epochs']} | {r['remedy']} | {r['rate']:.2f} | {r['dims_above_0.1']} | "
                     f"{r['mutual_information']:.2f} | {r['test_loss']:.2f} | {r['cost_vs_plain']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.collapse", description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    p.add_argument("--long-epochs", type=int, default=10, help="epochs of the longer runs (default 10)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.long_epochs < 1:
        p.error("--long-epochs must be at least 1")
    dataset = dataset_name(args.dataset)
    device = get_device()
    train, test = load_data(dataset, device=device)
    rows = run(train, test, args.settings, args.long_epochs)
    report = {"device": describe_device(device), "dataset": dataset, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    save_results(args.out, f"{device.type}-collapse", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
