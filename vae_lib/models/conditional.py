"""The conditional VAE of notebook 11: the label enters the encoder and the decoder.

q_phi(z|x, y) and p_theta(x|z, y), with y one-hot: the code z is free to hold what the label does
not say (the style), and choosing y at generation time chooses the class. The model answers the
course's one interface (:class:`~vae_lib.models.VAEBase`), with the labels as ``y``; ``fit`` and
``evaluate`` pass each batch's labels along.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import INPUT_DIM
from ..likelihoods import Likelihood
from ..losses import gaussian_kl_per_dim
from .base import VAEBase, _check_sizes, check_input
from .mlp import _SeedDecoder


class ConditionalVAE(_SeedDecoder, VAEBase):
    """The textbook MLP VAE with a one-hot label appended to the encoder's input and to z.

    Encoder: [x, onehot(y)] -> hidden -> (mu, logvar). Decoder: [z, onehot(y)] -> hidden -> 784.
    Every method takes the labels ``y`` (int64, values 0 .. n_classes - 1); a missing label or one
    outside the classes is a ``ValueError``. Introduced in notebook 11.
    """

    conditional = True

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, n_classes: int = 10, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli"):
        super().__init__(latent_dim, input_dim, likelihood)
        _check_sizes(hidden_dim=hidden_dim, n_classes=n_classes)
        self.hidden_dim, self.n_classes = hidden_dim, n_classes
        self.fc1 = nn.Linear(input_dim + n_classes, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        self._build_decoder(latent_dim + n_classes)

    def one_hot(self, y: torch.Tensor | None, n: int) -> torch.Tensor:
        """The labels ``y`` of ``n`` images as one-hot rows (n, n_classes), checked."""
        if y is None:
            raise ValueError("the conditional VAE needs the images' labels y; is the split without labels?")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.shape != (n,):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be an integer tensor of shape ({n},), one label per image; got {shape}")
        if n and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"labels must lie in 0 .. {self.n_classes - 1}; got values from "
                             f"{y.min().item()} to {y.max().item()}")
        return F.one_hot(y, self.n_classes).to(torch.float32)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q_phi(z | x, y) for images ``x`` (N, 784) with labels ``y`` (N,)."""
        check_input(x, self.input_dim, "ConditionalVAE.encode")
        h = torch.relu(self.fc1(torch.cat([x, self.one_hot(y, x.shape[0]).to(x)], dim=1)))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's logits for codes ``z`` (N, latent_dim) under labels ``y`` (N,)."""
        check_input(z, self.latent_dim, "ConditionalVAE.decode")
        return self.fc4(torch.relu(self.fc3(torch.cat([z, self.one_hot(y, z.shape[0]).to(z)], dim=1))))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Decode ``n`` prior draws under labels ``y``: a tensor of ``n`` labels, or one class for all."""
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.int64, device=self.device)
        return super().sample(n, generator, y)


class SemiSupervisedVAE(ConditionalVAE):
    """Kingma et al.'s (2014) M2: a conditional VAE in which a missing label is one more latent variable.

    Generative model p(y) p(z) p_theta(x | y, z), with p(y) uniform over the classes and p(z) = N(0, I);
    inference q_phi(y | x) (a classifier, :meth:`classify`) and q_phi(z | x, y) (the conditional
    encoder). For a labelled image the loss is the conditional VAE's -ELBO plus -log p(y); for an
    unlabelled one the label is summed out, -ELBO(x) = sum_y q(y|x) [-ELBO(x, y)] + KL(q(y|x) || p(y)),
    so every unlabelled image runs the encoder and decoder once per class. Because that bound would
    not train the classifier on labelled images, they add ``classifier_weight`` times -log q(y|x)
    (Kingma et al.'s alpha). Labels of -1 mark unlabelled images in a batch. :meth:`loss_terms` gives
    ``fit`` all of it, and the history records the true -ELBO (reconstruction + KL over y and z).
    Notebook 11.
    """

    semi_supervised = True

    def __init__(self, latent_dim: int = 16, hidden_dim: int = 400, n_classes: int = 10, input_dim: int = INPUT_DIM,
                 likelihood: Likelihood | str = "bernoulli", classifier_weight: float = 50.0):
        super().__init__(latent_dim, hidden_dim, n_classes, input_dim, likelihood)
        if isinstance(classifier_weight, bool) or not isinstance(classifier_weight, (int, float)) or classifier_weight < 0:
            raise ValueError(f"classifier_weight must be a number >= 0, got {classifier_weight!r}")
        self.classifier_weight = float(classifier_weight)
        self.classifier = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, n_classes))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of q_phi(y | x) for images ``x`` (N, 784): (N, n_classes)."""
        check_input(x, self.input_dim, "SemiSupervisedVAE.classify")
        return self.classifier(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
        """The most probable class under q_phi(y | x), on the CPU: (N,)."""
        was_training = self.training
        self.eval()
        out = torch.cat([self.classify(x[s:s + batch_size].to(self.device)).argmax(1).cpu()
                         for s in range(0, len(x), batch_size)])
        self.train(was_training)
        return out

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, likelihood: Likelihood,
                   validate: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image: the reconstruction term (N,), the KL per latent dimension with KL(q(y|x) || p(y)) as
        one more column (N, latent_dim + 1), and the classifier term (N,), zero for unlabelled images.

        Labels ``y`` of -1 mark unlabelled images; their terms are expectations under q(y|x).
        """
        n, k = x.shape[0], self.n_classes
        if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.is_floating_point():
            raise ValueError("SemiSupervisedVAE needs one integer label per image, -1 for an unlabelled one")
        labelled = y >= 0
        log_qy = F.log_softmax(self.classify(x), dim=1)                                  # (N, K)
        x_l, y_l, x_u = x[labelled], y[labelled], x[~labelled]
        xs = torch.cat([x_l, x_u.repeat_interleave(k, dim=0)])                          # unlabelled: once per class
        ys = torch.cat([y_l, torch.arange(k, device=x.device).repeat(len(x_u))])
        params, mu, logvar = self(xs, ys)
        rec_all = likelihood.nll(params, xs, validate=validate)
        kl_all = gaussian_kl_per_dim(mu, logvar, validate=validate)
        n_l = len(x_l)
        q_u = log_qy[~labelled].exp()                                                    # (N_u, K)
        rec = torch.empty(n, device=x.device, dtype=rec_all.dtype)
        kl = torch.empty(n, self.latent_dim + 1, device=x.device, dtype=kl_all.dtype)
        rec[labelled] = rec_all[:n_l]
        kl[labelled] = torch.cat([kl_all[:n_l], torch.full((n_l, 1), math.log(k), device=x.device)], dim=1)
        rec[~labelled] = (q_u * rec_all[n_l:].view(-1, k)).sum(1)
        kl_z = (q_u[:, :, None] * kl_all[n_l:].view(-1, k, self.latent_dim)).sum(1)
        kl_y = (q_u * log_qy[~labelled]).sum(1) + math.log(k)                          # KL(q(y|x) || uniform)
        kl[~labelled] = torch.cat([kl_z, kl_y[:, None]], dim=1)
        extra = torch.zeros(n, device=x.device, dtype=rec.dtype)
        extra[labelled] = -self.classifier_weight * log_qy[labelled].gather(1, y_l[:, None]).squeeze(1)
        return rec, kl, extra
