"""The beta-VAE of notebook 07: rate and distortion of models trained with several beta, and the
drawing function of its slider.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from ..plots import name_classes, show_images
from ..training import evaluate
from .joint import (_check_generator, _is_vae, _positive_int)


@dataclass
class BetaResult:
    """What notebook 07 keeps of one beta-VAE: its beta, rate and distortion, samples and codes.

    ``rate``: the test set's mean KL(q(z|x) || p(z)) in nats per image. ``distortion``: its mean
    reconstruction term E_q[-log p_theta(x|z)]. ``samples``: decoded prior draws (n, 784).
    ``codes``: posterior means of test images (N, 2); ``labels``: their classes (N,).
    """

    beta: float
    rate: float
    distortion: float
    samples: torch.Tensor
    codes: torch.Tensor
    labels: torch.Tensor


def beta_result(model: nn.Module, beta: float, test, n_samples: int = 64, n_codes: int = 2000,
                generator: torch.Generator | None = None) -> BetaResult:
    """Measure a trained beta-VAE on the test split and keep what :func:`draw_beta_vae` draws.

    Rate and distortion come from :func:`vae_lib.training.evaluate` over the whole split; samples
    are ``n_samples`` prior draws (from ``generator``); codes are the posterior means of the first
    ``n_codes`` test images (only their first two coordinates are drawn). Introduced in notebook 07.
    """
    if not _is_vae(model):
        raise ValueError(f"model must be a VAE, got {type(model).__name__}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    n_samples, n_codes = _positive_int(n_samples, "n_samples"), _positive_int(n_codes, "n_codes")
    _check_generator(generator)
    terms = evaluate(model, test)
    with torch.no_grad():
        samples = model.sample(n_samples, generator=generator).cpu()
        codes, _ = model.encode(test.images[:n_codes])
    return BetaResult(float(beta), terms["kl"], terms["recon"], samples, codes.cpu(), test.labels[:n_codes].cpu())


def draw_beta_vae(results: Sequence[BetaResult], beta: float, class_names: Sequence[str] | None = None):
    """Draw the beta-VAE with the given ``beta`` among ``results``: rate-distortion, samples, codes.

    Left: distortion against rate for every model, the chosen one ringed, with lines of equal
    negative ELBO (distortion + rate). Middle: 36 of its prior samples. Right: its test codes
    coloured by class. Returns the figure. The slider of notebook 07 calls it with the chosen beta.
    """
    import matplotlib.pyplot as plt

    if not results or not all(isinstance(r, BetaResult) for r in results):
        raise ValueError("results must be a non-empty sequence of BetaResult")
    betas = [r.beta for r in results]
    matches = [r for r in results if math.isclose(r.beta, float(beta), rel_tol=1e-9)]
    if not matches:
        raise ValueError(f"no model with beta={beta!r}; the trained betas are {betas}")
    chosen = matches[0]
    ordered = sorted(results, key=lambda r: r.beta)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.1, 1, 1]})

    ax = axes[0]
    rates = [r.rate for r in ordered]
    distortions = [r.distortion for r in ordered]
    ax.plot(rates, distortions, "o-", color="C0")
    for r in ordered:
        ax.annotate(f"β={r.beta:g}", (r.rate, r.distortion), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.plot([chosen.rate], [chosen.distortion], "o", ms=14, mfc="none", mec="C3", mew=2)
    lo, hi = min(rates), max(rates)
    pad = 0.15 * (hi - lo) + 0.5
    r_line = torch.linspace(max(lo - pad, 0.0), hi + pad, 50)
    for total in sorted({round(r.rate + r.distortion, 6) for r in ordered}):
        ax.plot(r_line, total - r_line, ":", color="0.7", lw=1)
    ax.set_xlim(r_line[0].item(), r_line[-1].item())
    span = max(distortions) - min(distortions)
    ax.set_ylim(min(distortions) - 0.15 * span - 0.5, max(distortions) + 0.15 * span + 0.5)
    ax.set_xlabel("rate: KL(q(z|x) || p(z))  [nats]")
    ax.set_ylabel("distortion: E_q[-log p(x|z)]  [nats]")
    ax.set_title("rate and distortion (dotted: equal −ELBO)")
    ax.grid(alpha=0.3)

    show_images(chosen.samples[:36], nrow=6, ax=axes[1], title=f"β = {chosen.beta:g}: prior samples")

    ax = axes[2]
    codes = chosen.codes[:, :2].numpy()
    scatter = ax.scatter(codes[:, 0], codes[:, 1], c=chosen.labels.numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(f"β = {chosen.beta:g}: posterior means of test images")
    if class_names is not None:
        handles = [plt.Line2D([], [], marker="o", ls="", color=scatter.cmap(scatter.norm(i)), label=name)
                   for i, name in enumerate(class_names)]
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        name_classes(ax, codes, chosen.labels.numpy(), class_names, fontsize=6)
    fig.suptitle(f"β = {chosen.beta:g}: rate {chosen.rate:.2f} nats, distortion {chosen.distortion:.2f} nats, "
                 f"−ELBO {chosen.rate + chosen.distortion:.2f} nats")
    fig.tight_layout()
    return fig
