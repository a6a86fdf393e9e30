"""Training: ``fit`` with a progress bar and a per-epoch test evaluation, and train-or-load.

The loop is the seed's, made fast: the data set lives on the device as one tensor and each batch
is an index into it (see :mod:`vae_lib.data`). Introduced in notebook 04.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import Split
from .losses import LIKELIHOODS, LossTerms, bernoulli_nll, check_pixels, gaussian_nll, vae_loss
from .models import AutoEncoder


@dataclass
class History:
    """Per-epoch record of a run: nats per image for each term, and seconds per epoch. Notebook 04.

    ``train_*`` is averaged over the epoch's batches while the model trains (the seed's printed
    quantity); ``test_*`` is measured on the test split after the epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    train_recon: list[float] = field(default_factory=list)
    train_kl: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_recon: list[float] = field(default_factory=list)
    test_kl: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, list[float]]:
        """The history as a plain dict of lists (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Rebuild a history from :meth:`to_dict`'s output; ``ValueError`` if keys are missing or extra."""
        names = set(cls.__dataclass_fields__)
        if set(d) != names:
            raise ValueError(f"a history needs exactly the keys {sorted(names)}, got {sorted(d)}")
        return cls(**{k: [float(v) for v in d[k]] for k in names})


def _decoder_output(logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    # The Bernoulli loss takes logits; the Gaussian one takes pixel means.
    return logits if likelihood == "bernoulli" else torch.sigmoid(logits)


def model_loss(model: nn.Module, x: torch.Tensor, likelihood: str = "bernoulli", beta: float = 1.0,
               reduction: str = "mean", validate: bool = True):
    """One forward pass and its loss terms, for a :class:`VAE` or an :class:`AutoEncoder`.

    An autoencoder has no KL term (reported as 0). Returns a :class:`~vae_lib.losses.LossTerms`.
    Introduced in notebook 04 (the autoencoder in notebook 06).
    """
    if isinstance(model, AutoEncoder):
        logits, _ = model(x)
        nll = bernoulli_nll if likelihood == "bernoulli" else gaussian_nll
        rec = nll(_decoder_output(logits, likelihood), x, reduction=reduction, validate=validate)
        return LossTerms(rec, rec, torch.zeros_like(rec))
    logits, mu, logvar = model(x)
    return vae_loss(_decoder_output(logits, likelihood), x, mu, logvar, likelihood, beta, reduction, validate)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 2000, likelihood: str = "bernoulli",
             beta: float = 1.0) -> dict[str, float]:
    """Mean negative ELBO, reconstruction and KL per image over a whole split (one z per image).

    The model is put in eval mode and restored. Introduced in notebook 04.
    """
    was_training = model.training
    model.eval()
    # Summed in float64 on the CPU: exact enough for 10,000 images, and MPS has no float64.
    totals = torch.zeros(3, dtype=torch.float64)
    for x, _ in split.batches(batch_size, shuffle=False):
        t = model_loss(model, x, likelihood, beta, reduction="sum", validate=False)
        totals += torch.stack([t.loss, t.recon, t.kl]).detach().cpu().double()
    model.train(was_training)
    loss, recon, kl = (totals / len(split)).tolist()
    return {"loss": loss, "recon": recon, "kl": kl}


# Devices whose fused Adam kernel this course has run and tested.
_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(params, lr: float = 1e-3) -> torch.optim.Adam:
    """The seed's optimiser, Adam, using PyTorch's fused kernel where the device has one.

    The fused kernel updates all the parameters in one pass, where the default runs several
    elementwise passes for each tensor. It computes the same update; ``tests/test_training.py``
    checks that against the reference loop. On other devices, or for parameters that are not
    floating point, this is plain ``torch.optim.Adam``. ``fit`` uses it. Notebook 04.
    """
    params = list(params)
    if not params:
        raise ValueError("adam needs at least one parameter")
    devices = {p.device.type for p in params}
    fused = len(devices) == 1 and devices <= set(_FUSED_ADAM_DEVICES) and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=True if fused else None)


def fit(
    model: nn.Module,
    train: Split,
    test: Split | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    likelihood: str = "bernoulli",
    beta: float = 1.0,
    binarize: bool = False,
    progress: bool = True,
    log=None,
) -> History:
    """Train ``model`` on ``train`` with Adam (the seed's defaults) and return its :class:`History`.

    Without an ``optimizer``, Adam comes from :func:`adam` (the fused kernel where there is one).

    Each step minimises the batch's summed negative ELBO, as the seed does. ``binarize`` draws a
    fresh binary image x ~ Bernoulli(pixels) for every batch (dynamic binarization). A ``tqdm``
    bar shows the running loss; ``log`` (for example ``print``) receives one line per epoch.
    Introduced in notebook 04.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(beta, (int, float)) and beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    # Check the data once here, so the hot loop need not check every batch.
    check_pixels(train.images, likelihood, name=f"{train.name} images")
    if test is not None:
        check_pixels(test.images, likelihood, name=f"{test.name} images")
    device = next(model.parameters()).device
    for split in (train, test):
        if split is not None and split.device != device:
            raise ValueError(f"the model is on {device} but {split.name} is on {split.device}; use split.to(device)")
    if optimizer is None:
        optimizer = adam(model.parameters(), lr=lr)
    history = History()
    n = len(train)
    steps = math.ceil(n / batch_size)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        totals = torch.zeros(3, device=device)
        bar = tqdm(train.batches(batch_size), total=steps, desc=f"epoch {epoch}/{epochs}",
                   disable=not progress, leave=False, mininterval=2.0)
        for step, (x, _) in enumerate(bar, 1):
            if binarize:
                x = torch.bernoulli(x)
            terms = model_loss(model, x, likelihood, beta, reduction="sum", validate=False)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            totals += torch.stack([terms.loss, terms.recon, terms.kl]).detach()
            if progress and step % 50 == 0:
                bar.set_postfix(loss=f"{totals[0].item() / min(step * batch_size, n):.2f}", refresh=False)
        bar.close()
        train_loss, train_recon, train_kl = (totals / n).tolist()
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"the training loss became {train_loss} in epoch {epoch}; try a smaller lr")
        seconds = time.perf_counter() - start
        history.train_loss.append(train_loss)
        history.train_recon.append(train_recon)
        history.train_kl.append(train_kl)
        history.seconds.append(seconds)
        if test is not None:
            ev = evaluate(model, test, likelihood=likelihood, beta=beta)
            history.test_loss.append(ev["loss"])
            history.test_recon.append(ev["recon"])
            history.test_kl.append(ev["kl"])
        if log is not None:
            line = f"Epoch {epoch}, Loss: {train_loss:.4f}"
            if test is not None:
                line += f", Test: {history.test_loss[-1]:.4f}"
            log(line + f", seconds: {seconds:.2f}")
    return history
