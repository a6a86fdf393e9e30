"""The learning-rate trial of notebook 08, for both nets and wider: which Adam learning rate suits each.

    python -m benchmarks.learning_rates                      # MLP and conv, latents 2 and 16, four learning rates
    python -m benchmarks.learning_rates --lrs 1e-3 3e-3 --epochs 2

Notebook 08 compares the seed's MLP with its convolutional VAE. A fair comparison gives both nets the
same search for their learning rate: this command trains each (the MLP with hidden 400, the conv net
with 16/32 feature maps) at each latent size and each learning rate for ``--epochs`` epochs from seed 0,
with the course's own ``fit`` (through ``train_or_load``, into a temporary folder, so nothing is
reused), and records the test -ELBO after every epoch. Results go to
``benchmarks/results/<device>-learning-rates.json`` and ``.md``; notebook 08 reads them.
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
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"
CHANNELS = 16
NETS = ("MLP", "conv")


def sweep(train: Split, test: Split, latents: list[int], lrs: list[float], epochs: int, log=print) -> list[dict]:
    """Train each net at each latent size and learning rate; one row per run, with its test -ELBO per epoch."""
    if epochs < 1 or not latents or not lrs or len(set(lrs)) != len(lrs) or any(lr <= 0 for lr in lrs):
        raise ValueError("epochs must be >= 1, and latents and lrs non-empty, with distinct positive learning rates")
    rows = []
    with tempfile.TemporaryDirectory(prefix="learning-rates-") as folder:
        for net in NETS:
            for z in latents:
                for lr in lrs:
                    config = (TrainConfig(dataset=train.dataset, latent_dim=z, epochs=epochs, lr=lr) if net == "MLP" else
                              TrainConfig(dataset=train.dataset, model="conv", latent_dim=z, channels=CHANNELS,
                                          epochs=epochs, lr=lr))
                    _, history = train_or_load(config, train, test, folder=folder, progress=False, log=lambda *a: None)
                    rows.append({"net": net, "latent": z, "lr": lr, "test_loss": list(history.test_loss),
                                 "seconds": list(history.seconds)})
                    log(f"{net:<5} latent {z:>2} lr {lr:<7g} test -ELBO by epoch "
                        + " ".join(f"{v:.2f}" for v in history.test_loss))
    return rows


def best(rows: list[dict], net: str, latent: int, epoch: int) -> dict:
    """The row of ``net`` at ``latent`` with the lowest test -ELBO after ``epoch`` epochs (counted from 1)."""
    candidates = [r for r in rows if r["net"] == net and r["latent"] == latent and len(r["test_loss"]) >= epoch]
    if not candidates:
        raise ValueError(f"no run of {net} at latent {latent} reached epoch {epoch}")
    return min(candidates, key=lambda r: r["test_loss"][epoch - 1])


def markdown(report: dict) -> str:
    rows, epochs = report["rows"], report["epochs"]
    lrs = sorted({r["lr"] for r in rows})
    lines = [
        f"### {report['device']}: learning rates of notebook 08's nets",
        "",
        f"{report['dataset']}, batch 128, Adam, {epochs} epochs from seed 0 with the course's fit (the conv net with "
        f"{CHANNELS}/{2 * CHANNELS} feature maps); torch {report['torch']}, Python {report['python']}; {report['date']}. "
        "Test -ELBO in nats per image after each epoch (epoch 1 / ... / last); the best learning rate of each row "
        "after the last epoch in bold.",
        "",
        "| net | latent | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|---|" + "---|" * len(lrs),
    ]
    for net in NETS:
        for z in sorted({r["latent"] for r in rows}):
            winner = best(rows, net, z, epochs)
            cells = []
            for lr in lrs:
                r = next(r for r in rows if r["net"] == net and r["latent"] == z and r["lr"] == lr)
                text = " / ".join(f"{v:.1f}" for v in r["test_loss"])
                cells.append(f"**{text}**" if r is winner else text)
            lines.append(f"| {net} | {z} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning_rates", description=__doc__.split("\n\n")[0])
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2], help="Adam learning rates")
    p.add_argument("--latents", type=int, nargs="+", default=[2, 16], help="latent sizes")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 1 or any(z < 1 for z in args.latents):
        p.error("--epochs and --latents must be positive")
    if any(lr <= 0 for lr in args.lrs) or len(set(args.lrs)) != len(args.lrs):
        p.error("--lrs must be positive and distinct")
    dataset = dataset_name(args.dataset)
    device = get_device()
    train, test = load_data(dataset, device=device)
    rows = sweep(train, test, args.latents, args.lrs, args.epochs)
    report = {"device": describe_device(device), "dataset": dataset, "epochs": args.epochs, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    save_results(args.out, f"{device.type}-learning-rates", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
