"""Using a VAE downstream (notebook 11): a judge for generated images, learning from few labels, augmentation.

* :class:`Judge` and :func:`train_or_load_judge`: a small classifier trained once on the real
  training images and cached like the models; it labels generated images.
* :func:`~vae_lib.labels.label_budget` (in :mod:`vae_lib.labels`, re-exported here): the labelled
  images a few-label experiment may use (n per class) and the rest *without* their labels.
* :class:`LinearClassifier` (:func:`fit_linear_classifier`) and :class:`NearestNeighbour`: the two
  classifiers of the few-label comparison, each used on pixels and on a VAE's codes (Kingma et
  al.'s M1) alike.
* :func:`conditional_samples` and :func:`draw_conditional_explorer`: a conditional VAE's images by class.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import INPUT_DIM, Split
from .labels import Budget, _labelled, _positive_int, label_budget, semi_supervised_split  # noqa: F401 (re-exported)
from .utils import checkpoint_dir, set_seed


# --------------------------------------------------------------------------- the judge


class Judge(nn.Module):
    """A small MLP classifier, 784 -> 256 -> 10 with ReLU and dropout, trained on real images. Notebook 11."""

    def __init__(self, n_classes: int = 10, hidden_dim: int = 256):
        super().__init__()
        _positive_int(n_classes, "n_classes")
        _positive_int(hidden_dim, "hidden_dim")
        self.n_classes, self.hidden_dim = n_classes, hidden_dim
        self.net = nn.Sequential(nn.Linear(INPUT_DIM, hidden_dim), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(hidden_dim, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for flat images (N, 784)."""
        return self.net(x)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 4000) -> torch.Tensor:
        """The judge's hidden layer (after its ReLU) for flat images (N, 784): (N, hidden_dim), float64 on the
        CPU, in eval mode. Notebook 12 measures samples in this space (a Fréchet distance)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 2 or images.shape[1] != INPUT_DIM:
            raise ValueError(f"images must have shape (N, {INPUT_DIM})")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = torch.cat([self.net[:2](images[s:s + batch_size].to(device)).cpu().double()
                         for s in range(0, len(images), batch_size)])
        self.train(was_training)
        return out

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 4000) -> torch.Tensor:
        """The most probable class of each image, on the images' device, in eval mode."""
        if not isinstance(images, torch.Tensor) or images.ndim != 2 or images.shape[1] != INPUT_DIM:
            raise ValueError(f"images must have shape (N, {INPUT_DIM})")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = torch.cat([self(images[s:s + batch_size].to(device)).argmax(1) for s in range(0, len(images), batch_size)])
        self.train(was_training)
        return out.to(images.device)


@dataclass(frozen=True)
class JudgeConfig:
    """What makes a judge: data set, width, epochs, batch, learning rate, seed. Notebook 11."""

    dataset: str
    hidden_dim: int = 256
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def filename(self) -> str:
        key = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        return f"judge_{self.dataset}_h{self.hidden_dim}_e{self.epochs}_{key}.pt"


def accuracy(judge: nn.Module, split: Split) -> float:
    """The share of ``split``'s images that ``judge`` labels correctly. Notebook 11."""
    labels = _labelled(split, "split")
    return (judge.predict(split.images) == labels).double().mean().item()


def train_or_load_judge(config: JudgeConfig, train: Split, test: Split, folder: str | Path | None = None,
                        log=print) -> tuple[Judge, float]:
    """The judge of ``config``, and its test accuracy: loaded from ``checkpoints/`` or trained there.

    Trained with Adam on the real training images (cross-entropy), saved atomically with its
    configuration and code fingerprint, read with ``weights_only=True``; a file that does not fit is
    reported and retrained. Notebook 11.
    """
    from .checkpoints import CheckpointError, atomic_save, code_fingerprint

    if config.dataset != train.dataset:
        raise ValueError(f"config.dataset is {config.dataset!r} but the training split is {train.dataset!r}")
    _labelled(train, "train")
    _labelled(test, "test")
    path = (Path(folder) if folder is not None else checkpoint_dir()) / config.filename()
    n_classes = len(train.classes)
    device = train.device
    if path.is_file():
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
            if payload.get("config") != asdict(config) or payload.get("code") != code_fingerprint("judge"):
                raise CheckpointError("it was made for another configuration or by other code")
            judge = Judge(n_classes, config.hidden_dim).to(device)
            judge.load_state_dict(payload["state_dict"])
            if log:
                log(f"Loaded the judge from {path}")
            return judge.eval(), accuracy(judge, test)
        except Exception as err:  # noqa: BLE001 - any unusable file is retrained, with the reason
            if log:
                log(f"Cannot use {path} ({err}); training the judge again")
    set_seed(config.seed)
    judge = Judge(n_classes, config.hidden_dim).to(device)
    optimizer = torch.optim.Adam(judge.parameters(), lr=config.lr)
    for _ in range(config.epochs):
        judge.train()
        for x, y in train.batches(config.batch_size):
            loss = F.cross_entropy(judge(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    judge.eval()
    payload = {"config": asdict(config), "code": code_fingerprint("judge"),
               "state_dict": {k: v.detach().cpu() for k, v in judge.state_dict().items()}}
    try:
        atomic_save(payload, path)
    except (OSError, RuntimeError) as err:  # a read-only folder, a full disk
        if log:
            log(f"Could not save the judge to {path} ({err}); it is used unsaved")
    else:
        if log:
            log(f"Trained the judge for {config.epochs} epochs; saved to {path}")
    return judge, accuracy(judge, test)


def class_shares(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The share of each class among ``labels``: a (n_classes,) float64 tensor that sums to 1. Notebook 11."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) == 0 or labels.is_floating_point():
        raise ValueError("labels must be a non-empty 1-D integer tensor")
    return torch.bincount(labels.cpu(), minlength=n_classes).double() / len(labels)


# --------------------------------------------------------------------------- few labels: see vae_lib.labels


class LinearClassifier:
    """Multinomial logistic regression on standardised features: the first classifier of notebook 11.

    ``fit`` standardises each feature with the training set's mean and standard deviation and
    minimises the mean cross-entropy plus ``weight_decay`` times the squared weights, full batch,
    with L-BFGS. ``predict`` returns classes. The same classifier serves raw pixels and VAE codes.
    """

    def __init__(self, n_classes: int, weight_decay: float = 1e-2, steps: int = 200):
        self.n_classes = _positive_int(n_classes, "n_classes")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not (
                math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        self.weight_decay, self.steps = float(weight_decay), _positive_int(steps, "steps")
        self.linear = None

    def _standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features.double() - self.mean) / self.scale

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "LinearClassifier":
        """Fit on ``features`` (N, F) with integer ``labels`` (N,); returns itself."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or len(features) < 2:
            raise ValueError("features must be a tensor of shape (N, F) with N >= 2")
        if not isinstance(labels, torch.Tensor) or labels.shape != (len(features),) or labels.is_floating_point():
            raise ValueError(f"labels must be an integer tensor of shape ({len(features)},)")
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ValueError(f"labels must lie in 0 .. {self.n_classes - 1}")
        features, labels = features.detach().cpu(), labels.cpu()
        self.mean = features.double().mean(0)
        self.scale = features.double().std(0).clamp_min(1e-6)
        x = self._standardise(features)
        linear = nn.Linear(x.shape[1], self.n_classes).double()
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=self.steps, history_size=20,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(linear(x), labels) + self.weight_decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.linear = linear
        return self

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The most probable class for each row of ``features``."""
        if self.linear is None:
            raise ValueError("fit the classifier first")
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features must have shape (N, {self.mean.shape[0]})")
        return self.linear(self._standardise(features.detach().cpu())).argmax(1)

    def error(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of rows classified wrongly."""
        return (self.predict(features) != labels.cpu()).double().mean().item()


class NearestNeighbour:
    """The 1-nearest-neighbour classifier: each point gets the label of the closest training point.

    Euclidean distance on the features as given (pixels, or a VAE's codes); no training, no settings.
    The second classifier of notebook 11, whose answer depends on the geometry of its inputs.
    """

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "NearestNeighbour":
        """Remember ``features`` (N, F) and their integer ``labels`` (N,); returns itself."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or len(features) < 1:
            raise ValueError("features must be a tensor of shape (N, F) with N >= 1")
        if not isinstance(labels, torch.Tensor) or labels.shape != (len(features),) or labels.is_floating_point():
            raise ValueError(f"labels must be an integer tensor of shape ({len(features)},)")
        self.features, self.labels = features.detach().float().cpu(), labels.cpu()
        return self

    @torch.no_grad()
    def predict(self, features: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
        """The label of the nearest training point, for each row of ``features``."""
        if not hasattr(self, "features"):
            raise ValueError("fit the classifier first")
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.features.shape[1]:
            raise ValueError(f"features must have shape (N, {self.features.shape[1]})")
        features = features.detach().float().cpu()
        nearest = [torch.cdist(features[s:s + batch_size], self.features).argmin(1)
                   for s in range(0, len(features), batch_size)]
        return self.labels[torch.cat(nearest)]

    def error(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of rows classified wrongly."""
        return (self.predict(features) != labels.cpu()).double().mean().item()


def fit_linear_classifier(features: torch.Tensor, labels: torch.Tensor, n_classes: int,
                          weight_decay: float = 1e-2, steps: int = 200) -> LinearClassifier:
    """A fitted :class:`LinearClassifier`. Notebook 11."""
    return LinearClassifier(n_classes, weight_decay, steps).fit(features, labels)


# --------------------------------------------------------------------------- conditional samples


@torch.no_grad()
def conditional_samples(model: nn.Module, per_class: int, generator: torch.Generator | None = None,
                        classes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` decoded prior samples of a conditional VAE for each class: ``(images, labels)``.

    Images are decoder means (N, 784) on the CPU, labels the classes they were drawn for, class by
    class. Notebook 11.
    """
    if not getattr(model, "conditional", False):
        raise ValueError(f"model must be a conditional VAE, got {type(model).__name__}")
    per_class = _positive_int(per_class, "per_class")
    classes = list(range(model.n_classes)) if classes is None else list(classes)
    was_training = model.training
    model.eval()
    images, labels = [], []
    for k in classes:
        y = torch.full((per_class,), int(k), dtype=torch.int64, device=model.device)
        images.append(model.sample(per_class, generator=generator, y=y).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(images), torch.cat(labels)


def draw_conditional_explorer(model: nn.Module, label: int, z1: float, z2: float, classes: Sequence[str]):
    """Decode z = (z1, z2) under the chosen ``label``, large, and under every label, in a row. Returns the figure.

    The drawing function of notebook 11's explorer (a dropdown for the class, sliders for z): the
    large image is what the chosen class looks like with this style; the row keeps the style and
    changes the class.
    """
    import matplotlib.pyplot as plt

    from .plots import show_images

    if not getattr(model, "conditional", False) or model.latent_dim != 2:
        raise ValueError("model must be a conditional VAE with a 2-D latent space")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < model.n_classes:
        raise ValueError(f"label must be a class number in 0 .. {model.n_classes - 1}, got {label!r}")
    for name, value in (("z1", z1), ("z2", z2)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        z = torch.tensor([[float(z1), float(z2)]], device=model.device)
        chosen = model.decode(z, torch.tensor([label], device=model.device)).cpu()
        every = model.decode(z.expand(model.n_classes, -1), torch.arange(model.n_classes, device=model.device)).cpu()
    model.train(was_training)
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.6), gridspec_kw={"width_ratios": [1, 4]})
    axes[0].imshow(chosen.reshape(28, 28).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_axis_off()
    axes[0].set_title(f"{classes[label]}, z = ({z1:.2f}, {z2:.2f})", fontsize=10)
    show_images(every, nrow=model.n_classes, ax=axes[1], title="the same z under every class: " + ", ".join(classes))
    axes[1].title.set_fontsize(8)
    fig.tight_layout()
    return fig
