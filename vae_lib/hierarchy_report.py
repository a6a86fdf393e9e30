"""Notebook 13's measurements of a hierarchical VAE, layer by layer, and its pictures.

:func:`measure_hierarchy` gives one row of the notebook's table: -ELBO and -IWAE_k from independent
draws (:func:`vae_lib.prior_report.bounds`), each layer's KL and active units, and ELBO surgery of the
top layer. :func:`draw_layers` draws what each layer holds (rows that share z_2, columns that share
nothing else), the picture of the notebook's explorer. ``python -m benchmarks.hierarchy`` runs the
table for several seeds. Introduced in notebook 13.
"""
from __future__ import annotations

import torch

from .checkpoints import TrainConfig
from .diagnostics import ACTIVE_THRESHOLD, posterior_surgery
from .models import HierarchicalVAE
from .models.hierarchical import log_normal
from .prior_report import bounds

#: Notebook 13's models at equal budget: the sizes of each layer (z_1 first) and the one-level model
#: with as many latent dimensions; every block has HIDDEN units.
LAYERS, HIDDEN = (16, 8), 256
#: The remedies of notebook 13: a warm-up of the KL weight over the first half of the epochs, and free
#: bits of FREE_BITS nats per latent dimension (so in every layer).
FREE_BITS = 0.25
#: A unit is *informative* when its mean KL exceeds this many nats: it adds information of its own. (Burda
#: et al.'s count asks only whether E_q[z|x] varies with x, which a lower layer's unit can inherit from the
#: layer above while adding nothing; a one-layer unit active by their count has a KL of at least 0.005.)
INFORMATIVE_KL = 0.05
MODELS = ("one level", "bottom-up", "top-down", "bottom-up + warm-up", "top-down + warm-up",
          "bottom-up + free bits", "top-down + free bits")
#: What the explorer's dropdown offers: which layer varies along a row of the picture.
VARY = ("z₁, with z₂ fixed in each row", "z₂, with z₁ at the mean of p(z₁ | z₂)")


def table_configs(dataset: str, epochs: int, seed: int = 0, names=MODELS) -> dict[str, TrainConfig]:
    """The configurations of notebook 13's models (:data:`MODELS`), for ``epochs`` epochs and ``seed``."""
    out = {}
    for name in names:
        if name not in MODELS:
            raise ValueError(f"no model named {name!r}; the models are {MODELS}")
        base = {"dataset": dataset, "epochs": epochs, "seed": seed, "hidden_dim": HIDDEN}
        if name == "one level":
            out[name] = TrainConfig(**base, model="hvae-top-down", latent_dim=sum(LAYERS))
            continue
        inference = name.split(" ")[0]
        remedy = {"warm-up": {"warmup_epochs": max(1, epochs // 2)}, "free bits": {"free_bits": FREE_BITS}}
        extra = next((v for k, v in remedy.items() if name.endswith(k)), {})
        out[name] = TrainConfig(**base, model=f"hvae-{inference}", latent_dim=LAYERS[0], top_latent_dim=LAYERS[1],
                                **extra)
    return out


def _check_model(model) -> HierarchicalVAE:
    if not isinstance(model, HierarchicalVAE):
        raise ValueError(f"model must be a HierarchicalVAE (vae_lib.models), got {type(model).__name__}")
    return model


@torch.no_grad()
def check_layer_kls(model: HierarchicalVAE, images: torch.Tensor, draws: int = 200, seed: int = 0) -> dict:
    """The KL terms layer by layer (:meth:`~vae_lib.models.HierarchicalVAE.layer_kl`, closed forms where
    they exist) against an independent Monte Carlo estimate of the joint E_q[log q(z_1..z_L|x) - log
    p(z_1..z_L)], every term at a draw, from ``draws`` draws per image of ``images``.

    Returns ``layers`` (each layer's mean KL), ``total`` (their sum), ``joint``, ``difference`` (total -
    joint) and its standard error ``se``, from the spread over the images of their per-image
    differences (each image's two estimates use independent draws). A wrong sign or a missing term in
    any layer's KL moves ``difference`` by many ``se``. The draws come from a CPU generator seeded with
    ``seed``.
    """
    model = _check_model(model)
    n = images.shape[0]
    if n < 2:
        raise ValueError("check_layer_kls needs at least 2 images, for the standard error")
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    x = images.to(model.device).repeat(draws, 1)

    def eps():
        return [torch.randn(x.shape[0], d, generator=g).to(model.device) for d in model.latent_dims]

    layers = torch.stack([k.cpu().double().sum(-1) for k in model.layer_kl(model.infer(x, eps()))])   # (L, rows)
    out = model.infer(x, eps())
    joint = sum((log_normal(z, *q) - log_normal(z, *p)).cpu().double().sum(-1)
                for z, q, p in zip(out["z"], out["q"], out["p"]))
    model.train(was_training)
    total = layers.sum(0)
    per_image = total.view(draws, n).mean(0) - joint.view(draws, n).mean(0)
    se = (per_image.std() / n ** 0.5).item()
    return {"layers": layers.mean(1).tolist(), "total": total.mean().item(), "joint": joint.mean().item(),
            "difference": (total.mean() - joint.mean()).item(), "se": se}


def active_per_layer(model: HierarchicalVAE, images: torch.Tensor, n_draws: int = 10,
                     generator: torch.Generator | None = None, threshold: float = ACTIVE_THRESHOLD) -> list[int]:
    """Burda et al.'s active units in each layer, z_1 first: dimensions whose Var_x(E_q[z_l|x]) exceeds
    ``threshold`` (0.01), with E_q[z_l|x] averaged over ``n_draws`` draws of the layers it depends on."""
    means = _check_model(model).layer_means(images, n_draws, generator)
    return [int((m.var(0, unbiased=False) > threshold).sum()) for m in means]


def measure_hierarchy(model: HierarchicalVAE, images: torch.Tensor, n_eval: int = 1000, k: int = 100,
                      n_draws: int = 10, seed: int = 0) -> dict:
    """One row of notebook 13's table for ``model`` on the first ``n_eval`` of ``images``, as a flat dict.

    ``negative_elbo`` and ``negative_iwae`` (IWAE_k) with their standard errors over images and their
    paired ``gap`` (from independent draws), ``kl_layers`` (each layer's KL term, nats per image, z_1
    first; their sum is the rate), ``active_layers`` (active units per layer, of ``latent_dims``),
    ``informative_layers`` (units per layer whose mean KL exceeds :data:`INFORMATIVE_KL`), and
    the top layer's ELBO surgery: its KL split into ``top_I_q`` and ``top_marginal_kl`` (the KL of the
    aggregate posterior of z_L to N(0, I)), both by Monte Carlo. Seeds derive from ``seed``.
    """
    model = _check_model(model)
    x = images[:n_eval].to(model.device)
    b = bounds(model, x, k=k, generator=torch.Generator().manual_seed(seed))
    kls = model.layer_kls(x, n_draws, torch.Generator().manual_seed(seed + 1))
    active = active_per_layer(model, x, n_draws, torch.Generator().manual_seed(seed + 2))
    mu, logvar = model.top_posterior(x, torch.Generator().manual_seed(seed + 3))
    surgery = posterior_surgery(mu, logvar, 4000, torch.Generator().manual_seed(seed + 4))
    return {"negative_elbo": b.negative_elbo, "negative_elbo_se": b.negative_elbo_se,
            "negative_iwae": b.negative_iwae, "negative_iwae_se": b.negative_iwae_se, "gap": b.gap, "gap_se": b.gap_se,
            "kl_layers": [k_.sum().item() for k_ in kls], "active_layers": active,
            "informative_layers": [int((k_ > INFORMATIVE_KL).sum()) for k_ in kls],
            "latent_dims": list(model.latent_dims), "top_kl": surgery.average_kl, "top_I_q": surgery.mutual_information,
            "top_I_q_se": surgery.mutual_information_se, "top_marginal_kl": surgery.marginal_kl,
            "top_marginal_kl_se": surgery.marginal_kl_se, "parameters": sum(p.numel() for p in model.parameters())}


@torch.no_grad()
def layer_grid(model: HierarchicalVAE, vary: str, rows: int = 5, columns: int = 8, seed: int = 0) -> torch.Tensor:
    """Decoded pixel means, ``rows`` x ``columns`` images in row order, that show what each layer holds.

    ``vary`` is one of :data:`VARY`. z_1 varies: each row draws one z_2 ~ N(0, I) and keeps it; its
    first image decodes the mean of p(z_1 | z_2), the others draws z_1 ~ p(z_1 | z_2). z_2 varies:
    every image is a new z_2, decoded at the mean of p(z_1 | z_2), so nothing but z_2 changes. Draws
    come from a CPU generator seeded with ``seed``.
    """
    model = _check_model(model)
    if model.levels != 2:
        raise ValueError(f"the picture is for a two-level model; this one has {model.levels} layers")
    if vary not in VARY:
        raise ValueError(f"vary must be one of {VARY}, got {vary!r}")
    g = torch.Generator().manual_seed(seed)
    if vary == VARY[1]:
        return model.sample(rows * columns, g, draw=False).cpu()
    top = torch.randn(rows, model.latent_dims[1], generator=g).repeat_interleave(columns, 0)
    z1 = model.sample_layers(rows * columns, g, top=top)[0]
    means = model.sample_layers(rows * columns, top=top, draw=False)[0]
    z1.view(rows, columns, -1)[:, 0] = means.view(rows, columns, -1)[:, 0]
    return model.decode(z1).cpu()


def draw_layers(models: dict, model: str, vary: str, seed: int = 0, rows: int = 5, columns: int = 8):
    """Notebook 13's explorer: :func:`layer_grid` of ``models[model]``, with a title saying what varies.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from .plots import show_images

    if model not in models:
        raise ValueError(f"no model named {model!r}; the models are {list(models)}")
    images = layer_grid(models[model], vary, rows, columns, seed)
    fig, ax = plt.subplots(figsize=(columns * 0.75 + 0.4, rows * 0.75 + 0.7))
    show_images(images, nrow=columns, ax=ax, title=f"{model}: {vary.split(',')[0]} varies along each row")
    return fig
