"""Notebook 09's table, one row longer: the 256-way categorical decoder, on the notebook's protocol.

    python -m benchmarks.categorical                 # about 10 minutes on a 2-core CPU, on Fashion-MNIST
    python -m benchmarks.categorical --epochs 1 --dataset mnist-5k

The categorical likelihood gives every pixel a free distribution over its 256 levels: the seed's MLP
then ends in a layer of 400 x (784 x 256) weights, 80 million, and a step costs about ten times a
step of the discretized logistic on a CPU. That does not fit notebook 09's time budget, so this command
runs its protocol for it: the seed's MLP with a 16-dimensional code, ``--epochs`` epochs (2, as the
notebook), Adam 1e-3, batch 128, seed 0, the course's ``fit`` through ``train_or_load`` (in a temporary
folder); then the same 300 test images as the notebook (a permutation of the test set seeded 0) with
100 importance samples each (seeded 1): the bound on -log P(x) from the -ELBO and from -IWAE_100, in
bits per dimension, and the rate. Results go to ``benchmarks/results/<device>-categorical.json`` and
``.md``; notebook 09 reads them.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import save_results
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.data import dataset_name, load_data
from vae_lib.evaluation import eight_bit_bounds
from vae_lib.likelihoods import nats_to_bits_per_dim
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"
LATENT, K, N_EVAL = 16, 100, 300


def run(dataset: str, epochs: int, device: torch.device) -> dict:
    """Train the categorical-decoder VAE and bound -log P(x) on notebook 09's test images."""
    train, test = load_data(dataset, device=device)
    config = TrainConfig(dataset=dataset, latent_dim=LATENT, epochs=epochs, likelihood="categorical")
    with tempfile.TemporaryDirectory(prefix="categorical-") as folder:
        model, history = train_or_load(config, train, test, folder=folder, progress=False, log=print)
    model.eval()
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0)).to(device)
    x_eval = test.images[order[:N_EVAL]]
    start = time.perf_counter()
    bound = eight_bit_bounds(model, x_eval, K, generator=torch.Generator().manual_seed(1))
    return {"likelihood": "categorical", "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": epochs, "seconds_per_epoch": statistics.median(history.seconds),
            "rate": history.test_kl[-1], "test_loss": history.test_loss[-1],
            "bits_elbo": nats_to_bits_per_dim(bound["elbo"].mean().item()),
            "bits_iwae": nats_to_bits_per_dim(bound["iwae"].mean().item()),
            "evaluation_seconds": time.perf_counter() - start}


def markdown(report: dict) -> str:
    r = report["row"]
    return "\n".join([
        f"### {report['device']}: the 256-way categorical decoder on notebook 09's protocol",
        "",
        f"{report['dataset']}, the seed's MLP with latent {LATENT}, {r['epochs']} epochs, Adam 1e-3, batch 128, seed 0; "
        f"the bound on the same {N_EVAL} test images as notebook 09, {K} importance samples each; torch {report['torch']}, "
        f"Python {report['python']}; {report['date']}.",
        "",
        "| likelihood | parameters | s / epoch | rate (KL), nats | bound from −ELBO, bits/dim | bound from −IWAE_100, bits/dim |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {r['likelihood']} | {r['parameters']:,} | {r['seconds_per_epoch']:.1f} | {r['rate']:.2f} | {r['bits_elbo']:.3f} | "
        f"{r['bits_iwae']:.3f} |",
    ]) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.categorical", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="epochs (default 2, as notebook 09)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    dataset = dataset_name(args.dataset)
    device = get_device()
    report = {"device": describe_device(device), "dataset": dataset, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "row": run(dataset, args.epochs, device)}
    save_results(args.out, f"{device.type}-categorical", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
