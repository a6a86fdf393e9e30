"""Few labels (notebook 11): which labelled images an experiment may use, and the rest without labels.

:func:`label_budget` picks n labelled images per class and hides every other image's label;
:func:`semi_supervised_split` lays a budget out for a semi-supervised model (M2). The checkpoints of
models trained on a budget (``TrainConfig.labels_per_class``) are made from it, so it sits below
:mod:`vae_lib.checkpoints`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import Split


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _labelled(split: Split, what: str) -> torch.Tensor:
    if not isinstance(split, Split):
        raise ValueError(f"{what} must be a vae_lib Split, got {type(split).__name__}")
    if split.labels is None:
        raise ValueError(f"{what} has no labels; this needs labelled images")
    return split.labels


@dataclass
class Budget:
    """A few-label experiment's data: ``labelled`` (n images per class, with labels), ``unlabelled``
    (every other training image, its labels removed) and the row numbers ``index`` of the labelled ones
    in the training split. Notebook 11."""

    labelled: Split
    unlabelled: Split
    index: torch.Tensor
    per_class: int


def label_budget(train: Split, per_class: int, seed: int = 0) -> Budget:
    """Pick ``per_class`` labelled training images of every class at random (``seed``); hide the rest's labels.

    Every method of a few-label comparison gets the :class:`Budget`: its ``labelled`` split holds all
    the labels it may use, and its ``unlabelled`` split has ``labels=None``, so that a method that
    learns from unlabelled images cannot see their labels even by accident. Notebook 11.
    """
    labels = _labelled(train, "train")
    per_class = _positive_int(per_class, "per_class")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(len(train.classes)):
        rows = (labels == k).nonzero().flatten().cpu()
        if len(rows) < per_class:
            raise ValueError(f"class {k} has only {len(rows)} images; cannot take {per_class}")
        chosen.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    index = torch.cat(chosen).sort().values.to(train.device)
    mask = torch.ones(len(train), dtype=torch.bool, device=train.device)
    mask[index] = False
    unlabelled = Split(train.images[mask], None, train.classes, train.dataset, train.train)
    return Budget(train.subset(index), unlabelled, index, per_class)


def semi_supervised_split(budget: Budget, labelled_share: float = 0.1) -> Split:
    """Every training image of ``budget`` in one split for a semi-supervised model (notebook 11's M2).

    The unlabelled images keep no label: they get -1. The labelled ones keep theirs and are repeated,
    whole copies, until they make about ``labelled_share`` of the split, so that a batch holds a few of
    them and the classifier term is trained every step (Kingma et al. and Pyro's SS-VAE interleave
    labelled and unlabelled batches for the same reason). The labels the model can see are exactly
    the budget's. Notebook 11.
    """
    if not (isinstance(labelled_share, (int, float)) and 0 < labelled_share < 1):
        raise ValueError(f"labelled_share must lie strictly between 0 and 1, got {labelled_share!r}")
    n_l, n_u = len(budget.labelled), len(budget.unlabelled)
    copies = max(1, round(labelled_share * n_u / ((1 - labelled_share) * n_l)))
    images = torch.cat([budget.labelled.images.repeat(copies, 1), budget.unlabelled.images])
    labels = torch.cat([budget.labelled.labels.repeat(copies),
                        torch.full((n_u,), -1, dtype=torch.int64, device=images.device)])
    return Split(images, labels, budget.labelled.classes, budget.labelled.dataset, True)
