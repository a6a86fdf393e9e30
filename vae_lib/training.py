"""Training: ``fit`` with a progress bar and a per-epoch test evaluation, and the KL in practice.

The loop is the textbook VAE's, made fast: the data set lives on the device as one tensor and each batch
is an index into it (see :mod:`vae_lib.data`). Introduced in notebook 04. Notebook 10 adds two
options to the training objective, KL warm-up and free bits; the history keeps reporting the true
negative ELBO, whatever the objective.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import Split
from .likelihoods import BinarizedBernoulli, Likelihood, binarize as binarize_pixels, get_likelihood
from .losses import LossTerms, _reduce
from .models.mlp import AutoEncoder


@dataclass
class History:
    """Per-epoch record of a run: nats per image for each term, and seconds per epoch. Notebook 04.

    ``train_*`` is averaged over the epoch's batches while the model trains (the textbook VAE's printed
    quantity); ``test_*`` is measured on the test split after the epoch. ``train_loss`` and
    ``test_loss`` are always the true negative ELBO, reconstruction + KL; ``train_objective`` is
    what the optimiser minimised (with a KL weight ``beta`` other than 1, during warm-up, or with free
    bits, it differs; notebook 10). ``interrupted`` is true when the run was stopped before its last
    epoch (the finished epochs are recorded).
    """

    train_loss: list[float] = field(default_factory=list)
    train_recon: list[float] = field(default_factory=list)
    train_kl: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_recon: list[float] = field(default_factory=list)
    test_kl: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    train_objective: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        """The history as a plain dict of lists (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Rebuild a history from :meth:`to_dict`'s output; ``ValueError`` if keys are missing or extra."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(d, dict) or set(d) != names:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"a history needs exactly the keys {sorted(names)}, got {got}")
        lists = {k: [float(v) for v in d[k]] for k in names if k != "interrupted"}
        return cls(**lists, interrupted=bool(d["interrupted"]))


def _resolve(model: nn.Module, likelihood: Likelihood | str | None) -> Likelihood:
    """The likelihood to use with ``model``: its own, or ``likelihood`` if it fits the decoder."""
    own = getattr(model, "likelihood", None)
    if likelihood is None:
        if own is None:
            raise ValueError(f"{type(model).__name__} has no likelihood: pass likelihood=...")
        return own
    lik = get_likelihood(likelihood)
    if own is not None and lik.params_per_pixel != own.params_per_pixel:
        raise ValueError(f"the {lik.name} likelihood needs {lik.params_per_pixel} numbers per pixel but the model's "
                         f"decoder outputs {own.params_per_pixel}; build the model with likelihood={lik.name!r}")
    return lik


def model_terms(model: nn.Module, x: torch.Tensor, likelihood: Likelihood | str | None = None,
                validate: bool = True, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward pass: the reconstruction term per image (N,) and the KL per image and dimension (N, d).

    The KL is ``None`` for an autoencoder. With a prior that has no closed-form KL (notebook 12) it is
    the one-draw Monte Carlo estimate log q(z|x) - log p(z), one column (N, 1). ``likelihood`` defaults
    to the model's own. ``y``: the images' labels, used by conditional models. Introduced in notebook 10.
    """
    rec, kl, _ = _terms(model, x, _resolve(model, likelihood), validate, y)
    return rec, kl


def _terms(model: nn.Module, x: torch.Tensor, lik: Likelihood, validate: bool, y: torch.Tensor | None):
    """``model_terms`` and a third term the objective adds, per image (N,) or ``None``: a model with a
    ``loss_terms(x, y, likelihood, validate)`` method defines all three itself (notebook 11's M2, whose
    classifier term is part of its objective but not of its ELBO)."""
    if hasattr(model, "loss_terms"):
        return model.loss_terms(x, y, lik, validate=validate)
    if isinstance(model, AutoEncoder):
        params, _ = model(x)
        return lik.nll(params, x, validate=validate), None, None
    # forward's three steps, keeping the draw z for a prior whose KL has no closed form
    mu, logvar = model.encode(x, y)
    z = model.reparameterize(mu, logvar)
    params = model.decode_logits(z, y, x)
    return lik.nll(params, x, validate=validate), model.prior.kl(z, mu, logvar, validate=validate), None


def model_loss(model: nn.Module, x: torch.Tensor, likelihood: Likelihood | str | None = None, beta: float = 1.0,
               reduction: str = "mean", validate: bool = True, y: torch.Tensor | None = None) -> LossTerms:
    """One forward pass and its loss terms, for any VAE of the course or an :class:`AutoEncoder`.

    ``recon + beta * kl``; an autoencoder has no KL term (reported as 0). ``likelihood`` defaults to
    the model's. Returns a :class:`~vae_lib.losses.LossTerms`. Introduced in notebook 04 (the
    autoencoder in notebook 06).
    """
    rec, kl = model_terms(model, x, likelihood, validate, y)
    kl = torch.zeros_like(rec) if kl is None else kl.sum(-1)
    return LossTerms(_reduce(rec + beta * kl, reduction), _reduce(rec, reduction), _reduce(kl, reduction))


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 2000,
             likelihood: Likelihood | str | None = None) -> dict[str, float]:
    """Mean negative ELBO, reconstruction and KL per image over a whole split (one z per image).

    The split's images are used as they are: binarize or dequantize them first where the
    likelihood models such data (:meth:`~vae_lib.likelihoods.Likelihood.prepare`). The model is put
    in eval mode and restored. Introduced in notebook 04.
    """
    lik = _resolve(model, likelihood)
    lik.check(split.images, name=f"{split.name} images")
    was_training = model.training
    model.eval()
    # Summed in float64 on the CPU: exact enough for 10,000 images, and MPS has no float64.
    totals = torch.zeros(3, dtype=torch.float64)
    for x, y in split.batches(batch_size, shuffle=False):
        t = model_loss(model, x, lik, reduction="sum", validate=False, y=y)
        totals += torch.stack([t.loss, t.recon, t.kl]).detach().cpu().double()
    model.train(was_training)
    loss, recon, kl = (totals / len(split)).tolist()
    return {"loss": loss, "recon": recon, "kl": kl}


# Devices whose fused Adam kernel this course has run and tested.
_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(params, lr: float = 1e-3) -> torch.optim.Adam:
    """The textbook VAE's optimiser, Adam, using PyTorch's fused kernel where the device has one.

    The fused kernel updates all the parameters in one pass, where the default runs several
    elementwise passes for each tensor. It computes the same update; ``tests/test_training.py``
    checks that against the reference loop. On other devices, or for parameters that are not
    floating point, this is plain ``torch.optim.Adam``. ``fit`` uses it. Notebook 04.
    """
    params = list(params)
    if not params:
        raise ValueError("adam needs at least one parameter")
    return torch.optim.Adam(params, lr=lr, fused=True if can_fuse_adam(params) else None)


def can_fuse_adam(params) -> bool:
    """True when PyTorch's fused Adam kernel can update ``params``: floating-point tensors, all on one
    device of a type whose kernel the course has tested (the CPU or CUDA). :func:`adam` uses it."""
    params = list(params)
    devices = {p.device.type for p in params}
    return (len(devices) == 1 and devices <= set(_FUSED_ADAM_DEVICES)
            and all(p.is_floating_point() for p in params))


# --------------------------------------------------------------------------- the KL term in practice


def kl_weight(epoch: int, beta: float = 1.0, warmup_epochs: int = 0) -> float:
    """The KL weight of epoch ``epoch`` (counted from 1): beta * min(1, epoch / warmup_epochs).

    KL warm-up (Bowman et al., 2016; Sonderby et al., 2016) lets the decoder learn to use z before
    the KL term pulls q(z|x) to the prior: the weight grows linearly over the first
    ``warmup_epochs`` epochs (0.01, 0.02, ... for 100 of them, as in Tomczak's and Norouzi et al.'s
    code) and is ``beta`` from then on. ``warmup_epochs=0`` means no warm-up. Notebook 10.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be an integer >= 1 (epochs count from 1), got {epoch!r}")
    _check_warmup(warmup_epochs)
    _check_beta(beta)
    return float(beta) if warmup_epochs == 0 else float(beta) * min(1.0, epoch / warmup_epochs)


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term of a batch with free bits (Kingma et al., 2016): N sum_j max(lambda, mean_n KL_nj).

    ``kl_per_dim``: (N, d), the KL of each image and dimension. Each dimension's batch-mean KL is
    clamped below at ``free_bits`` nats, so a dimension that spends less than lambda costs lambda
    whatever it does: the gradient stops pushing it towards the prior. Multiplied by N, it is
    the batch total, like the summed objective it replaces. ``free_bits=0`` gives the plain sum.
    Notebook 10.
    """
    if not isinstance(kl_per_dim, torch.Tensor) or kl_per_dim.ndim != 2 or kl_per_dim.shape[0] == 0:
        raise ValueError("kl_per_dim must be a tensor of shape (N, latent_dim) with N >= 1")
    _check_free_bits(free_bits)
    if free_bits == 0:
        return kl_per_dim.sum()
    return kl_per_dim.shape[0] * kl_per_dim.mean(0).clamp(min=free_bits).sum()


def cyclical_weight(fraction: float, beta: float = 1.0, cycles: int = 1, ramp: float = 0.5) -> float:
    """The KL weight of cyclical annealing (Fu et al., 2019) at ``fraction`` (0 to 1) of the training steps.

    The run is cut into ``cycles`` equal parts; in each, the weight rises linearly from 0 to ``beta``
    over the first ``ramp`` of the part and stays at ``beta`` for the rest. Every cycle lets the
    decoder learn again to use z while the KL is cheap, then makes the code pay. Notebook 10.
    """
    if not (isinstance(fraction, (int, float)) and 0 <= fraction <= 1):
        raise ValueError(f"fraction must be a number from 0 to 1 (the share of the run done), got {fraction!r}")
    _check_beta(beta)
    _check_cycles(cycles)
    if not (isinstance(ramp, (int, float)) and 0 < ramp <= 1):
        raise ValueError(f"ramp must be in (0, 1], got {ramp!r}")
    if cycles == 0:
        return float(beta)
    within = (fraction * cycles) % 1.0 if fraction < 1 else 1.0
    return float(beta) * min(1.0, within / ramp)


def capacity_kl(kl_per_dim: torch.Tensor, capacity: float, gamma: float) -> torch.Tensor:
    """The KL term of capacity annealing (Burgess et al., 2018): N gamma |mean_n KL_n - C| for a batch.

    ``kl_per_dim``: (N, d). Instead of pushing the KL down, the term pulls the batch's mean KL per
    image towards the target capacity ``capacity`` (C nats), which ``fit`` raises linearly from 0 over
    the run, so the code is allowed more information step by step. Multiplied by N, like the summed
    objective. Notebook 10.
    """
    if not isinstance(kl_per_dim, torch.Tensor) or kl_per_dim.ndim != 2 or kl_per_dim.shape[0] == 0:
        raise ValueError("kl_per_dim must be a tensor of shape (N, latent_dim) with N >= 1")
    _check_capacity(capacity, gamma)
    return kl_per_dim.shape[0] * gamma * (kl_per_dim.sum(-1).mean() - capacity).abs()


def _check_cycles(cycles) -> None:
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
        raise ValueError(f"cycles must be an integer >= 0 (0: no cyclical annealing), got {cycles!r}")


def _check_capacity(capacity, gamma) -> None:
    for name, value in (("capacity", capacity), ("capacity_gamma", gamma)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_beta(beta) -> None:
    if isinstance(beta, bool) or not (isinstance(beta, (int, float)) and beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")


def _check_warmup(warmup_epochs) -> None:
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be an integer >= 0 (0: no warm-up), got {warmup_epochs!r}")


def _check_free_bits(free_bits) -> None:
    if isinstance(free_bits, bool) or not (isinstance(free_bits, (int, float)) and free_bits >= 0
                                           and math.isfinite(free_bits)):
        raise ValueError(f"free_bits must be a finite number of nats >= 0 (0: off), got {free_bits!r}")


# --------------------------------------------------------------------------- stopping cleanly


class _StopRequest:
    """While active, Ctrl-C (or JupyterLab's Kernel -> Interrupt) asks training to stop after the
    current step instead of raising in the middle of it. A second Ctrl-C raises at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _say(log, line: str) -> None:
    (log or print)(line)


def fit(
    model: nn.Module,
    train: Split,
    test: Split | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    likelihood: Likelihood | str | None = None,
    beta: float = 1.0,
    binarize: bool = False,
    progress: bool = True,
    log=None,
    warmup_epochs: int = 0,
    free_bits: float = 0.0,
    first_epoch: int = 1,
    callback=None,
    cycles: int = 0,
    capacity: float = 0.0,
    capacity_gamma: float = 0.0,
) -> History:
    """Train ``model`` on ``train`` with Adam (the textbook VAE's defaults) and return its :class:`History`.

    Each step minimises the batch's summed negative ELBO, as the seed does, on the data the
    likelihood models (``likelihood.prepare``: the grey levels for the textbook VAE's Bernoulli, a fresh
    dequantization for a density; ``binarize`` draws a fresh binary image every batch, dynamic
    binarization). ``likelihood`` defaults to the model's own; another one with as many numbers per
    pixel becomes the model's. The test split is prepared once, with a fixed seed.

    The KL term can be weighted: ``beta`` (a beta-VAE), a linear warm-up of that weight over the first
    ``warmup_epochs`` epochs (:func:`kl_weight`), ``cycles`` of cyclical annealing, step by step
    (:func:`cyclical_weight`), and ``free_bits`` nats per dimension (:func:`free_bits_kl`). With
    ``capacity_gamma`` > 0 the KL term becomes capacity annealing instead (:func:`capacity_kl`): the
    batch's mean KL is pulled towards a capacity that rises linearly from 0 to ``capacity`` nats over
    the run. The history records the true negative ELBO whatever the objective.
    Without an ``optimizer``, Adam comes from :func:`adam` (the fused kernel where there is one).
    ``first_epoch`` numbers the epochs of a resumed run (it continues the warm-up);
    ``callback(epoch, history)`` runs after each epoch and stops training by returning True.

    An interrupt (Ctrl-C, or Kernel -> Interrupt in JupyterLab) stops training at the end of the
    current step: the model keeps the weights trained so far, the history holds the finished
    epochs and has ``interrupted`` set. A ``tqdm`` bar shows the running loss; ``log`` (for example
    ``print``) receives one line per epoch. Introduced in notebook 04; notebook 10 adds the KL options.
    """
    lik = _resolve(model, likelihood)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(first_epoch, bool) or not isinstance(first_epoch, int) or first_epoch < 1:
        raise ValueError(f"first_epoch must be an integer >= 1, got {first_epoch!r}")
    _check_beta(beta)
    _check_warmup(warmup_epochs)
    _check_free_bits(free_bits)
    _check_cycles(cycles)
    _check_capacity(capacity, capacity_gamma)
    if warmup_epochs and cycles:
        raise ValueError("warmup_epochs and cycles both set the KL weight's schedule: choose one")
    if capacity_gamma and (warmup_epochs or cycles or free_bits or beta != 1):
        raise ValueError("capacity annealing replaces the KL term, weighted by capacity_gamma: use it without "
                         "warmup_epochs, cycles or free_bits, and with beta=1")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be a function callback(epoch, history) or None")
    prior = getattr(model, "prior", None)
    if free_bits and prior is not None and not prior.closed_form_kl:
        raise ValueError(f"free bits clamp the KL of each latent dimension, which the {prior.name} prior's Monte Carlo "
                         "KL does not split into; use free_bits=0 with it")
    if getattr(model, "likelihood", lik) is not lik:
        model.likelihood = lik  # the decoder's outputs now mean what they were trained for
    if binarize:
        if lik.name not in ("bernoulli", BinarizedBernoulli.name):
            raise ValueError(f"binarize=True makes binary images, which only a Bernoulli models; the likelihood is {lik.name}")
        lik = get_likelihood(BinarizedBernoulli.name)
    prepare = binarize_pixels if binarize else lik.prepare
    device = next(model.parameters()).device
    for split in (train, test):
        if split is not None and split.device != device:
            raise ValueError(f"the model is on {device} but {split.name} is on {split.device}; use split.to(device)")
    # Check the data once here (as the likelihood will see them), so the hot loop need not check every batch.
    lik.check(prepare(train.images, torch.Generator(device=device).manual_seed(0)), name=f"{train.name} images")
    if test is not None:
        test = test.with_images(prepare(test.images, torch.Generator().manual_seed(0)))
        lik.check(test.images, name=f"{test.name} images")
    if optimizer is None:
        optimizer = adam(model.parameters(), lr=lr)
    history = History()
    n = len(train)
    steps = math.ceil(n / batch_size)
    last = first_epoch + epochs - 1
    total_steps = last * steps                   # the schedules of cycles and capacity span the whole run
    with _StopRequest() as stop:
        for epoch in range(first_epoch, last + 1):
            if stop.requested:  # Ctrl-C arrived between epochs (in the evaluation, the log or the callback)
                break
            weight = kl_weight(epoch, beta, warmup_epochs)
            model.train()
            start = time.perf_counter()
            totals = torch.zeros(3, device=device)  # objective, reconstruction, KL
            bar = tqdm(train.batches(batch_size), total=steps, desc=f"epoch {epoch}/{last}",
                       disable=not progress, leave=False, mininterval=2.0)
            for step, (x, y) in enumerate(bar, 1):
                try:
                    x = prepare(x)
                    rec, kl, extra = _terms(model, x, lik, False, y)
                    rec_sum = rec.sum()
                    kl_sum = rec_sum.new_zeros(()) if kl is None else kl.sum()
                    done = ((epoch - 1) * steps + step - 1) / total_steps      # share of the run before this step
                    if cycles:
                        weight = cyclical_weight(done, beta, cycles)
                    if kl is None:
                        kl_term = kl_sum
                    elif capacity_gamma:
                        kl_term = capacity_kl(kl, capacity * done, capacity_gamma)
                    else:
                        kl_term = kl_sum if free_bits == 0 else free_bits_kl(kl, free_bits)
                    objective = rec_sum + weight * kl_term + (0 if extra is None else extra.sum())
                    optimizer.zero_grad(set_to_none=True)
                    objective.backward()
                    optimizer.step()
                except KeyboardInterrupt:  # raised inside the step: its gradients are dropped
                    # (before optimizer.step the weights are untouched; the signal handler above makes a
                    # raise inside optimizer.step itself all but impossible)
                    optimizer.zero_grad(set_to_none=True)
                    stop.requested = True
                    break
                totals += torch.stack([objective.detach(), rec_sum.detach(), kl_sum.detach()])
                if stop.requested:  # Ctrl-C arrived during this step, which has now finished
                    break
                if progress and step % 50 == 0:
                    bar.set_postfix(loss=f"{(totals[1] + totals[2]).item() / min(step * batch_size, n):.2f}",
                                    refresh=False)
            bar.close()
            if stop.requested:
                break
            objective_mean, train_recon, train_kl = (totals[:3] / n).tolist()
            train_loss = train_recon + train_kl
            if not math.isfinite(train_loss) or not math.isfinite(objective_mean):
                raise FloatingPointError(f"the training loss became {train_loss} in epoch {epoch}; try a smaller lr")
            seconds = time.perf_counter() - start
            history.train_loss.append(train_loss)
            history.train_recon.append(train_recon)
            history.train_kl.append(train_kl)
            history.train_objective.append(objective_mean)
            history.beta.append(weight)
            history.seconds.append(seconds)
            if test is not None:
                ev = evaluate(model, test, likelihood=lik)
                history.test_loss.append(ev["loss"])
                history.test_recon.append(ev["recon"])
                history.test_kl.append(ev["kl"])
            if log is not None:
                line = f"Epoch {epoch}, Loss: {train_loss:.4f}"
                if test is not None:
                    line += f", Test: {history.test_loss[-1]:.4f}"
                log(line + f", seconds: {seconds:.2f}")
            if callback is not None and callback(epoch, history):
                break
    if stop.requested and len(history) < epochs:
        history.interrupted = True
        _say(log, f"Interrupted: {len(history)} of {epochs} epochs completed. The model keeps the weights "
                  "of its last finished step; the history holds the finished epochs.")
    return history
