"""Train-or-load: trained models cached on disk, keyed by their configuration and data set.

A checkpoint is a plain dict of tensors, numbers and strings, written atomically (to a temporary
file in the same folder, then renamed) and read with ``torch.load(..., weights_only=True)``, which
cannot run code from the file. A checkpoint that is unreadable, or whose configuration or weights
do not match what was asked for, is reported and retrained, never used silently. Introduced in
notebook 04.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .data import Split
from .models import build_model
from .training import History, fit
from .utils import checkpoint_dir, set_seed

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used: unreadable, corrupt, or made for another configuration."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model. Its defaults are the seed's.

    Two runs with equal configurations (on the same data set) share a checkpoint. Notebook 04.
    """

    dataset: str = "mnist"
    model: str = "vae"
    latent_dim: int = 2
    hidden_dim: int = 400
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    likelihood: str = "bernoulli"
    beta: float = 1.0
    binarize: bool = False
    seed: int = 0

    def to_dict(self) -> dict:
        """The configuration as a plain dict (stored in the checkpoint and compared on load)."""
        return asdict(self)

    def key(self) -> str:
        """A short stable hash of the configuration, used in the file name."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def filename(self) -> str:
        """A readable file name that ends in the configuration's :meth:`key`."""
        return f"{self.model}_{self.dataset}_z{self.latent_dim}_h{self.hidden_dim}_e{self.epochs}_{self.key()}.pt"


def checkpoint_path(config: TrainConfig, folder: str | Path | None = None) -> Path:
    """Where the checkpoint of ``config`` lives (``checkpoints/`` unless ``folder`` is given). Notebook 04."""
    return (Path(folder) if folder is not None else checkpoint_dir()) / config.filename()


def save_checkpoint(path: str | Path, model: nn.Module, config: TrainConfig, history: History) -> Path:
    """Write model weights, configuration and history to ``path`` atomically.

    The file appears complete or not at all: an interrupted save leaves any earlier file intact.
    Notebook 04.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history.to_dict(),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path, config: TrainConfig, device: torch.device | str = "cpu") -> tuple[nn.Module, History]:
    """Load the model and history saved at ``path`` for ``config``, on ``device``.

    Raises :class:`CheckpointError` saying what is wrong when the file is missing, unreadable,
    of another format, made for another configuration, or holds weights of other shapes.
    Notebook 04.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or foreign file fails in many ways inside torch.load
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a vae_lib checkpoint of format {FORMAT_VERSION}")
    if payload.get("config") != config.to_dict():
        raise CheckpointError(f"{path} was trained with {payload.get('config')}, not the requested {config.to_dict()}")
    model = build_model(config.model, config.latent_dim, config.hidden_dim).to(device)
    try:
        model.load_state_dict(payload["state_dict"])
        history = History.from_dict(payload["history"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} holds weights or a history that do not fit the model: {err}") from err
    model.eval()
    return model, history


def train_or_load(
    config: TrainConfig,
    train: Split,
    test: Split | None = None,
    folder: str | Path | None = None,
    progress: bool = True,
    retrain: bool = False,
    log=print,
) -> tuple[nn.Module, History]:
    """Return ``(model, history)`` for ``config``: from its checkpoint if a good one exists, else
    trained with :func:`~vae_lib.training.fit` and saved.

    ``config.dataset`` must name the data set of ``train``. A bad checkpoint is reported through
    ``log`` and retrained. Introduced in notebook 04.
    """
    if config.dataset != train.dataset:
        raise ValueError(f"config.dataset is {config.dataset!r} but the training split is {train.dataset!r}")
    path = checkpoint_path(config, folder)
    device = train.device
    if path.exists() and not retrain:
        try:
            model, history = load_checkpoint(path, config, device)
            if test is not None and len(history.test_loss) != len(history):
                raise CheckpointError(f"{path} was trained without test-set evaluation, which is asked for now")
            if log:
                log(f"Loaded {config.model} from {path}")
            return model, history
        except CheckpointError as err:
            if log:
                log(f"Cannot use the checkpoint, training again: {err}")
    set_seed(config.seed)
    model = build_model(config.model, config.latent_dim, config.hidden_dim).to(device)
    history = fit(model, train, test, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                  likelihood=config.likelihood, beta=config.beta, binarize=config.binarize, progress=progress)
    save_checkpoint(path, model, config, history)
    if log:
        log(f"Trained {config.model} for {config.epochs} epochs; saved to {path}")
    model.eval()
    return model, history
