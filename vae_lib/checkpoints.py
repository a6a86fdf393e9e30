"""Train-or-load: trained models cached on disk, keyed by their configuration and data set.

A checkpoint is a plain dict of tensors, numbers and strings, written atomically (to a temporary
file in the same folder, then renamed) and read with ``torch.load(..., weights_only=True)``, which
cannot run code from the file. It records what made it: the configuration and a fingerprint of the
code that builds, trains and feeds the model (:func:`code_fingerprint`). A checkpoint that is
unreadable, or whose configuration, code or weights do not match what is asked for now, is reported
and retrained, never used silently. Introduced in notebook 04.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn

from .data import Split, training_selection
from .labels import label_budget, semi_supervised_split
from .registry import build_model
from .training import History, fit
from .utils import checkpoint_dir, set_seed

FORMAT_VERSION = 2
#: What of :mod:`vae_lib.priors` makes a model (not its pictures or the post-hoc fit).
_PRIOR_CODE = ("_LOG_2PI", "PSEUDO_INPUT_MEAN", "PSEUDO_INPUT_STD", "_positive_int", "_check_generator", "log_normal",
               "log_normal_pairs", "Prior", "StandardNormal", "MixturePrior", "MixtureOfGaussians", "VampPrior",
               "PRIORS", "get_prior")
#: The modules whose code decides what a trained model is: the data, the likelihoods, the loss, the
#: training loop and the models' shared base; each kind of model adds the module that defines it. A
#: change to their code (not to their comments or docstrings) changes :func:`code_fingerprint`, and
#: checkpoints made before it are retrained.
#: Of the data module only what shapes the data counts: the split and its batches, and how a split is
#: loaded (not, say, the wording of its error messages).
CODE_MODULES = {"data": ("Split", "load_split"), "likelihoods": None, "losses": None, "priors": _PRIOR_CODE,
                "models/base": None, "models/mlp": None, "training": None}
KIND_MODULES = {"conv": ("models/conv",), "made": ("models/made",), "made-hidden": ("models/made",),
                "cvae": ("models/conditional",), "m2": ("models/conditional",), "judge": ("downstream",),
                "hvae-bottom-up": ("models/hierarchical",), "hvae-top-down": ("models/hierarchical",),
                "hvae-paper": ("models/hvae_paper", "models/hierarchical"), "spatial": ("models/conv", "models/spatial"),
                "vq": ("models/conv", "models/spatial", "models/vq"), "fsq": ("models/conv", "models/spatial", "models/vq")}
#: The fields TrainConfig had when the first checkpoints were written. Fields added since enter a
#: checkpoint's key only when they differ from their defaults, so existing names stay valid.
_FIRST_FIELDS = ("dataset", "model", "latent_dim", "hidden_dim", "epochs", "batch_size", "lr", "likelihood",
                 "beta", "binarize", "seed")


def _code_without_docstrings(source: str, keep: tuple[str, ...] | None = None) -> str:
    """The code of a module as a canonical string: no comments, docstrings, layout or drawing functions.

    Top-level functions named ``draw_*`` only draw figures, so they do not decide what a model is.
    With ``keep``, only the top-level functions, classes and assignments of those names count.
    """
    tree = ast.parse(source)
    tree.body = [node for node in tree.body if not (isinstance(node, ast.FunctionDef) and node.name.startswith("draw_"))]
    if keep is not None:
        def kept(node) -> bool:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                return node.name in keep
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            names = {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
            return bool(names) and names <= set(keep)
        tree.body = [node for node in tree.body if kept(node)]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)  # canonical source text: the same on every Python version that parses it


def code_fingerprint(kind: str = "vae", extra: tuple[str, ...] = ()) -> str:
    """A short hash of the code that makes a model of ``kind``: :data:`CODE_MODULES`, the kind's own
    module (:data:`KIND_MODULES`) and the ``extra`` modules, without comments, docstrings, layout or
    ``draw_*`` functions.

    Stored in every checkpoint; a checkpoint with another fingerprint was made by other code and is
    retrained. Introduced in notebook 04.
    """
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    modules = {**CODE_MODULES, **{name: None for name in (*KIND_MODULES.get(kind, ()), *extra)}}
    for name, keep in modules.items():
        digest.update(name.encode())
        digest.update(_code_without_docstrings((folder / f"{name}.py").read_text(encoding="utf-8"), keep).encode())
    return digest.hexdigest()[:16]


def config_fingerprint(config: "TrainConfig") -> str:
    """:func:`code_fingerprint` of the code that makes ``config``'s model: with ``labels_per_class``,
    also the code that picks the labelled images (``labels``); with ``held_out_class`` or ``mutation_rate``
    (notebook 16), also :func:`vae_lib.data.training_selection` and :func:`vae_lib.data.mutate_pixels`."""
    fingerprint = code_fingerprint(config.model, ("labels",) if config.labels_per_class else ())
    if config.held_out_class >= 0 or config.mutation_rate:
        # notebook 16's models also depend on which images were held out and how they were mutated
        blob = (fingerprint + _code_without_docstrings(_data_source(), ("training_selection", "mutate_pixels"))).encode()
        fingerprint = hashlib.sha256(blob).hexdigest()[:16]
    return fingerprint


def _data_source() -> str:
    """The source of data.py, whose selection code (``training_selection``) notebook 16's fingerprints hash."""
    return (Path(__file__).resolve().parent / "data.py").read_text(encoding="utf-8")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used: unreadable, corrupt, or made for another configuration."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model. Its defaults are the textbook VAE's.

    Two runs with equal configurations (on the same data set) share a checkpoint. Notebook 04.
    """

    dataset: str = "fashion-mnist"
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
    channels: int = 32
    warmup_epochs: int = 0
    free_bits: float = 0.0
    labels_per_class: int = 0       # > 0: train on that many labelled images per class only (notebook 11)
    label_seed: int = 0             # which ones: vae_lib.downstream.label_budget(train, labels_per_class, label_seed)
    cycles: int = 0                 # cyclical annealing of the KL weight (notebook 10)
    capacity: float = 0.0           # capacity annealing: the target KL rises to this many nats per image
    capacity_gamma: float = 0.0     # ... and the KL term is capacity_gamma * |KL - C| (0: off)
    prior: str = "standard"         # p(z): "standard", "mog" or "vamp" (notebook 12; vae_lib.priors)
    prior_components: int = 0       # K, the components of a mixture prior (0 for the standard normal)
    prior_init: str = "random"      # a VampPrior's pseudo-inputs: "random" (N(0.05, 0.01^2)) or "data" (K images)
    top_latent_dim: int = 0         # a hierarchical VAE's second layer z_2 (notebook 13); 0: one layer
    codebook_size: int = 0          # K, the codes of a VQ-VAE or FSQ model (notebook 14); 0 for the others
    codebook: str = ""              # a VQ-VAE's remedies, e.g. "ema+kmeans+restart" ("": the plain codebook)
    held_out_class: int = -1        # >= 0: train without that class's images (notebook 16); -1: every class
    mutation_rate: float = 0.0      # > 0: train on images with that share of pixels mutated (vae_lib.data.mutate_pixels)

    def __post_init__(self):
        if self.prior_init not in ("random", "data") or (self.prior_init == "data" and self.prior != "vamp"):
            raise ValueError(f"prior_init must be 'random', or 'data' for the VampPrior (pseudo-inputs started at "
                             f"training images); got {self.prior_init!r} with prior={self.prior!r}")
        if not isinstance(self.labels_per_class, int) or self.labels_per_class < 0:
            raise ValueError(f"labels_per_class must be 0 (the whole training split) or a positive number of "
                             f"images per class, not {self.labels_per_class!r}")
        if isinstance(self.held_out_class, bool) or not isinstance(self.held_out_class, int) \
                or self.held_out_class < -1:
            raise ValueError(f"held_out_class must be -1 (train on every class) or a class label, not "
                             f"{self.held_out_class!r}")
        if isinstance(self.mutation_rate, bool) or not isinstance(self.mutation_rate, (int, float)) \
                or not 0.0 <= self.mutation_rate < 1.0:
            raise ValueError(f"mutation_rate must be a share of pixels in [0, 1), not {self.mutation_rate!r}")

    def to_dict(self) -> dict:
        """The configuration as a plain dict (stored in the checkpoint and compared on load)."""
        return asdict(self)

    def key(self) -> str:
        """A short stable hash of the configuration, used in the file name.

        Fields added after the first checkpoints enter it only when they differ from their
        defaults, so a configuration that does not use them keeps its old name.
        """
        defaults = {f.name: f.default for f in fields(self)}
        d = {k: v for k, v in self.to_dict().items() if k in _FIRST_FIELDS or v != defaults[k]}
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def filename(self) -> str:
        """A readable file name that ends in the configuration's :meth:`key`."""
        width = f"c{self.channels}" if self.model in ("conv", "spatial", "vq", "fsq") else f"h{self.hidden_dim}"
        labels = f"_l{self.labels_per_class}s{self.label_seed}" if self.labels_per_class else ""
        prior = f"_{self.prior}{self.prior_components}{'d' if self.prior_init == 'data' else ''}" \
            if self.prior != "standard" else ""
        top = f"-{self.top_latent_dim}" if self.top_latent_dim else ""
        codes = f"_k{self.codebook_size}{'-' + self.codebook if self.codebook else ''}" if self.codebook_size else ""
        held_out = f"_wo{self.held_out_class}" if self.held_out_class >= 0 else ""
        mutated = f"_mu{self.mutation_rate:g}" if self.mutation_rate else ""
        return (f"{self.model}_{self.dataset}_z{self.latent_dim}{top}_{width}_e{self.epochs}{labels}{prior}{codes}"
                f"{held_out}{mutated}_{self.key()}.pt")

    def build(self) -> nn.Module:
        """A fresh, untrained model of this configuration (:func:`vae_lib.registry.build_model`)."""
        return build_model(self.model, self.latent_dim, self.hidden_dim, likelihood=self.likelihood,
                           channels=self.channels, prior=self.prior, prior_components=self.prior_components,
                           top_latent_dim=self.top_latent_dim, codebook_size=self.codebook_size,
                           codebook=self.codebook)


def checkpoint_path(config: TrainConfig, folder: str | Path | None = None) -> Path:
    """Where the checkpoint of ``config`` lives (``checkpoints/`` unless ``folder`` is given). Notebook 04."""
    return (Path(folder) if folder is not None else checkpoint_dir()) / config.filename()


def save_checkpoint(path: str | Path, model: nn.Module, config: TrainConfig, history: History) -> Path:
    """Write model weights, configuration and history to ``path`` atomically.

    The file appears complete or not at all: an interrupted save leaves any earlier file intact.
    Notebook 04.
    """
    payload = {
        "format_version": FORMAT_VERSION,
        "code": config_fingerprint(config),
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history.to_dict(),
    }
    return atomic_save(payload, path)


def atomic_save(payload: dict, path: str | Path) -> Path:
    """``torch.save`` of ``payload`` to ``path`` that appears complete or not at all.

    Written to a temporary file in the same folder, flushed to disk, then renamed over ``path``; an
    interrupted or failed save leaves any earlier file intact and no temporary file behind.
    Notebook 04 (every cached file of the course goes through it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file would be (mkstemp makes it private)
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
    stored = payload.get("config")
    if isinstance(stored, dict):   # a checkpoint from before a field was added was made with its default
        stored = {**{f.name: f.default for f in fields(TrainConfig) if f.name not in _FIRST_FIELDS}, **stored}
    if stored != config.to_dict():
        raise CheckpointError(f"{path} was trained with {payload.get('config')}, not the requested {config.to_dict()}")
    if payload.get("code") != config_fingerprint(config):
        raise CheckpointError(f"{path} was made by other code (vae_lib's models, data or training changed since: "
                              f"fingerprint {payload.get('code')}, now {config_fingerprint(config)})")
    model = config.build().to(device)
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

    ``config.dataset`` must name the data set of ``train``. With ``config.labels_per_class`` the model
    is trained on the labelled images that :func:`vae_lib.labels.label_budget` picks from ``train``
    (notebook 11). A bad checkpoint is reported through ``log`` and retrained. Introduced in notebook 04.
    """
    if config.dataset != train.dataset:
        raise ValueError(f"config.dataset is {config.dataset!r} but the training split is {train.dataset!r}")
    if config.labels_per_class:
        budget = label_budget(train, config.labels_per_class, config.label_seed)
        # a semi-supervised model learns from every image, the others from the budget's labelled ones only
        train = semi_supervised_split(budget) if config.model == "m2" else budget.labelled
    train = training_selection(train, config.held_out_class, config.mutation_rate, config.seed)
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
    model = config.build().to(device)
    if config.prior_init == "data":
        model.prior.start_from(train.images, torch.Generator().manual_seed(config.seed))
    history = fit(model, train, test, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                  beta=config.beta, binarize=config.binarize, progress=progress,
                  warmup_epochs=config.warmup_epochs, free_bits=config.free_bits, cycles=config.cycles,
                  capacity=config.capacity, capacity_gamma=config.capacity_gamma)
    model.eval()
    if history.interrupted:
        if log:
            log(f"Not saved: the run stopped after {len(history)} of {config.epochs} epochs, so the next call "
                "trains this configuration again from the start.")
        return model, history
    try:
        save_checkpoint(path, model, config, history)
    except (OSError, RuntimeError) as err:
        # Minutes of training must not be lost to a full disk or a read-only folder.
        warnings.warn(f"Trained {config.model} for {config.epochs} epochs but could not save it to {path} "
                      f"({type(err).__name__}: {err}). The model and its history are returned; to keep it, free "
                      "disk space or point VAE_CHECKPOINT_DIR at a writable folder and save again with "
                      "vae_lib.checkpoints.save_checkpoint(path, model, config, history).", stacklevel=2)
        return model, history
    if log:
        log(f"Trained {config.model} for {config.epochs} epochs; saved to {path}")
    return model, history


def train_or_load_stage(path: str | Path, meta: dict, load_model, new_model, train, what: str,
                        device: torch.device | str = "cpu", log=print) -> tuple[nn.Module, History]:
    """A second-stage model (a prior over a trained autoencoder's codes, a diffusion model over a VAE's
    latents): loaded from ``path``, or trained and saved there.

    ``meta``: what makes the model (both stages' configurations and the code's fingerprint), stored in the
    checkpoint and compared on load. ``load_model()`` builds an untrained model for the stored weights;
    ``new_model()`` builds the model to train (seeding first, as ``train_or_load`` does); ``train(model)``
    trains it (with ``fit``) and returns its :class:`~vae_lib.training.History`. The file is read with
    ``weights_only=True``; one that is unreadable, made for something else or with weights that do not fit
    is reported through ``log`` and retrained. A run stopped early is returned unsaved; a failed save
    (a full disk) is reported and the trained model returned. ``what`` names the model in the messages.
    Notebook 14 (notebook 15 uses it too).
    """
    path = Path(path)
    if path.is_file():
        try:
            try:
                payload = torch.load(path, map_location=device, weights_only=True)
            except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways
                raise CheckpointError(f"unreadable ({type(err).__name__}: {err})") from err
            if not isinstance(payload, dict) or {k: payload.get(k) for k in meta} != meta:
                raise CheckpointError("made for another configuration, or by other code")
            model = load_model().to(device)
            try:
                model.load_state_dict(payload["state_dict"])
                history = History.from_dict(payload["history"])
            except (RuntimeError, ValueError, KeyError, TypeError) as err:
                raise CheckpointError(f"weights that do not fit: {err}") from err
            if log:
                log(f"Loaded the {what} from {path}")
            return model.eval(), history
        except CheckpointError as err:
            if log:
                log(f"Cannot use {path} ({err}); training the {what} again")
    model = new_model().to(device)
    history = train(model)
    model.eval()
    if history.interrupted:
        if log:
            log(f"Not saved: the {what}'s training stopped after {len(history)} epochs")
        return model, history
    payload = {**meta, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "history": history.to_dict()}
    try:
        atomic_save(payload, path)
    except (OSError, RuntimeError) as err:   # a read-only folder, a full disk: the trained model is still returned
        if log:
            log(f"Could not save the {what} to {path} ({err}); it is used unsaved")
    else:
        if log:
            log(f"Trained the {what} for {len(history)} epochs; saved to {path}")
    return model, history
