"""What a wider convolutional VAE costs and buys on this device (notebook 08's last question).

    python -m benchmarks.conv_widths                       # 8/16, 16/32, 32/64 and 64/128 feature maps
    python -m benchmarks.conv_widths --channels 8 16 --epochs 2

Each model (the seed's MLP VAE with its learning rate 1e-3, then notebook 08's conv VAE at each width
with its learning rate 3e-3) is trained at latent 2 from the config's seed (0) with the course's own ``fit`` (through
``train_or_load``, into a temporary folder, so nothing is reused) for ``--epochs`` epochs. Reported:
the training FLOPs per image, the median seconds per epoch after the first (the first includes the
warm-up: allocations, cuDNN's choice of algorithms), that time against the 16/32 net's, and the test
-ELBO after the last epoch. Results go to ``benchmarks/results/<device>-conv-widths.json`` and ``.md``.
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

from benchmarks.run import epoch_flops
from benchmarks import save_results
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.models.conv import ConvVAE, conv_vae_flops
from vae_lib.data import Split, dataset_name, load_data
from vae_lib.utils import REPO_ROOT, describe_device, get_device

RESULTS = REPO_ROOT / "benchmarks" / "results"
LATENT, CONV_LR, MLP_LR = 2, 3e-3, 1e-3


def widths(train: Split, test: Split, channels: list[int], epochs: int, log=print) -> list[dict]:
    """Train the MLP and the conv VAE at each width in ``channels``; one row per model."""
    if epochs < 2:
        raise ValueError("epochs must be at least 2 (the first is the warm-up and is not timed)")
    if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"channels must be positive integers, got {channels!r}")
    if len(set(channels)) != len(channels):
        # the second model of a width would load the first one's checkpoint and report its times
        raise ValueError(f"channels must not repeat a width, got {channels!r}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="conv-widths-") as folder:
        for c in [None, *channels]:
            if c is None:
                config = TrainConfig(dataset=train.dataset, latent_dim=LATENT, epochs=epochs, lr=MLP_LR)
                name, flops = "MLP 400", epoch_flops(128, latent=LATENT) / 128
            else:
                config = TrainConfig(dataset=train.dataset, model="conv", latent_dim=LATENT, channels=c,
                                     epochs=epochs, lr=CONV_LR)
                name, flops = f"conv {c}/{2 * c}", conv_vae_flops(ConvVAE(latent_dim=LATENT, channels=c))["training"]
            _, history = train_or_load(config, train, test, folder=folder, progress=False, log=lambda *a: None)
            rows.append({"model": name, "channels": c, "lr": config.lr, "training_flops_per_image": flops,
                         "seconds": list(history.seconds), "seconds_per_epoch": statistics.median(history.seconds[1:]),
                         "test_loss": history.test_loss[-1]})
            log(f"{name:<12} {rows[-1]['seconds_per_epoch']:7.2f} s/epoch  test -ELBO {rows[-1]['test_loss']:.2f}")
    reference = next((r for r in rows if r["channels"] == 16), None)
    for r in rows:
        r["time_vs_conv16"] = r["seconds_per_epoch"] / reference["seconds_per_epoch"] if reference else None
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"### {report['device']}: conv VAE widths",
        "",
        f"{report['dataset']}, latent {LATENT}, batch 128, {report['epochs']} epochs from seed 0 with the course's fit; "
        f"torch {report['torch']}, Python {report['python']}; {report['date']}. Seconds per epoch: the median after "
        "the first epoch.",
        "",
        "| model | Adam lr | training MFLOP / image | s / epoch | × conv 16/32 | test -ELBO |",
        "|---|---|---|---|---|---|",
    ]
    if all(r["time_vs_conv16"] is None for r in report["rows"]):
        lines[-2] = lines[-2].replace("× conv 16/32", "× conv 16/32 (not run)")
    for r in report["rows"]:
        ratio = "" if r["time_vs_conv16"] is None else f"{r['time_vs_conv16']:.2f}"
        lines.append(f"| {r['model']} | {r['lr']:g} | {r['training_flops_per_image'] / 1e6:.1f} | "
                     f"{r['seconds_per_epoch']:.2f} | {ratio} | {r['test_loss']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conv_widths", description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64],
                   help="feature maps after the first convolution (twice as many after the second)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per model; the first is not timed (default 3)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (one warm-up epoch plus at least one timed)")
    if any(c < 1 for c in args.channels) or len(set(args.channels)) != len(args.channels):
        p.error("--channels must be positive and distinct")
    dataset = dataset_name(args.dataset)
    device = get_device()
    train, test = load_data(dataset, device=device)
    rows = widths(train, test, args.channels, args.epochs)
    report = {"device": describe_device(device), "dataset": dataset, "epochs": args.epochs, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    save_results(args.out, f"{device.type}-conv-widths", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
