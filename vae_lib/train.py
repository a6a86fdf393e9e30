"""Command line: train the textbook MLP VAE, as ``shared/seed/seed_vae.py`` does, on the course's fast path.

    python -m vae_lib.train                      # the textbook VAE's defaults, on Fashion-MNIST (the course's default)
    python -m vae_lib.train --dataset mnist      # on MNIST, as the textbook script trains

Prints one ``Epoch k, Loss: X`` line per epoch, X being the textbook VAE's quantity (the epoch's mean
training loss per image), then saves 64 prior samples as an image (the textbook VAE's commented-out
``save_image`` step). Every default is the textbook VAE's and each has a flag.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torchvision.utils import save_image

from .data import DATASETS, DatasetUnavailableError, as_images, dataset_name, load_data
from .models import VAE
from .training import fit
from .utils import check_device, describe_device, get_device, outputs_dir, set_seed


def parse_args(argv=None) -> argparse.Namespace:
    """The command line's options; each default is the textbook VAE's."""
    p = argparse.ArgumentParser(prog="python -m vae_lib.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=None, help=f"one of {', '.join(DATASETS)} (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--latent-dim", type=int, default=2, help="latent dimension (seed: 2)")
    p.add_argument("--hidden-dim", type=int, default=400, help="hidden width (seed: 400)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (seed: 128)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (seed: 10)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (seed: 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: the fastest available)")
    p.add_argument("--samples", type=Path, default=None,
                   help="where to save the 64 prior samples (default: outputs/train_samples_<dataset>.png)")
    p.add_argument("--no-test", action="store_true", help="skip the per-epoch test-set evaluation")
    p.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    args = p.parse_args(argv)
    for name in ("latent_dim", "hidden_dim", "batch_size", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        p.error("--lr must be positive")
    return args


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv=None) -> int:
    """Train as the textbook script does; return the exit status.

    0: done. 2: anything foreseeable went wrong (a bad option, missing or unreadable data, a device
    that is not there or fails, a diverging run, samples that cannot be written), reported as one
    line ``error: ...`` on stderr. 130: interrupted with Ctrl-C, after one line saying how far it got.
    """
    args = parse_args(argv)
    progress = {"phase": "starting", "epochs": 0}
    try:
        return _run(args, progress)
    except KeyboardInterrupt:
        # Reached when Ctrl-C falls outside a training step (fit stops cleanly inside one), or is pressed twice.
        done = f", {progress['epochs']} of {args.epochs} epochs completed" if progress["phase"] == "training" else ""
        print(f"interrupted while {progress['phase']}{done}; no samples saved", file=sys.stderr)
        return 130
    except (ValueError, DatasetUnavailableError, FloatingPointError, RuntimeError, OSError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, progress: dict) -> int:
    name = dataset_name(args.dataset)
    device = check_device(args.device, "--device") if args.device else get_device(verbose=False)
    set_seed(args.seed)
    print(f"Dataset: {name}; device: {describe_device(device)}", flush=True)
    progress["phase"] = "loading the data"
    train, test = load_data(name, device=device)
    model = VAE(latent_dim=args.latent_dim, hidden_dim=args.hidden_dim).to(device)

    def log(line: str) -> None:
        # fit's own note on an interrupt speaks of the model in memory; the command line says its own line below.
        if not line.startswith("Interrupted:"):
            progress["epochs"] += line.startswith("Epoch ")
            print(line, flush=True)

    progress["phase"] = "training"
    try:
        history = fit(model, train, None if args.no_test else test, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, progress=args.progress, log=log)
    except FloatingPointError as err:
        raise FloatingPointError(f"training diverged: {_one_line(err)} (now --lr {args.lr:g})") from err
    except RuntimeError as err:  # a GPU that fails or vanishes mid-run, out of memory, ...
        raise RuntimeError(f"training on {describe_device(device)} failed: {_one_line(err)}") from err
    if history.interrupted:
        print(f"interrupted: {len(history)} of {args.epochs} epochs completed; no samples saved", file=sys.stderr)
        return 130
    progress["phase"] = "saving the samples"
    samples = model.sample(64).cpu()
    path = args.samples or outputs_dir() / f"train_samples_{name}.png"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(as_images(samples), path, nrow=8)
    except OSError as err:
        raise OSError(f"cannot save the samples to {path} ({err.strerror or err}); choose another --samples path") from err
    print(f"Saved 64 prior samples to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
