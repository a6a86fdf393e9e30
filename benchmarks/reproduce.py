"""Reproduce a published likelihood: the VAE on dynamically binarized Fashion-MNIST, with the standard
prior or with the VampPrior, and the two-level HVAE with the standard prior.

    python -m benchmarks.reproduce                 # make reproduce: the full protocol (hours on a 2-core CPU)
    python -m benchmarks.reproduce --prior vamp    # make reproduce PRIOR=vamp: the same with the VampPrior
    python -m benchmarks.reproduce --model hvae    # make reproduce MODEL=hvae: the paper's two-level HVAE
    python -m benchmarks.reproduce --smoke         # the same code path on a few hundred images, in seconds

Norouzi et al. (NeurIPS 2020, "Exemplar VAE", Table 1) report -log p(x) = 228.70 +- 0.15 nats for this
model with the standard prior, and 227.35 +- 0.05 with the VampPrior (Tomczak and Welling, 2018;
:class:`vae_lib.priors.VampPrior`, K pseudo-inputs). Their protocol, as their code
(github.com/sajadn/Exemplar-VAE) runs it:

* data: the first 50,000 Fashion-MNIST training images for training, the last 10,000 for validation,
  the 10,000 test images; pixels / 255; training batches binarized afresh every time (dynamic
  binarization); validation and test sets binarized once;
* model: two gated dense layers of 300 units in the encoder and in the decoder, log sigma^2 through a
  hardtanh to [-6, 2], 40 latent dimensions, Bernoulli decoder, He-normal initial weights
  (:class:`vae_lib.models.GatedVAE`);
* training: batch 100, Adam with learning rate 5e-4 applied to each parameter's gradient divided by
  its norm (their ``AdamNormGrad``), a KL weight warmed up as epoch / 100 over the first 100 epochs,
  early stopping when the validation -ELBO has not improved for 50 epochs after the warm-up, at most
  2000 epochs; the weights with the best validation -ELBO are kept;
* evaluation: -log p(x) by importance sampling with 5000 samples per test image (IWAE_5000), on all
  10,000 test images.

With ``--model hvae`` the model is their two-level HVAE instead (:class:`vae_lib.models.TwoLevelGatedVAE`,
``models/HVAE_2level.py`` of Tomczak's ``jmtomczak/vae_vampprior``): q(z2|x) q(z1|x, z2), p(x|z1, z2)
p(z1|z2) N(z2; 0, I), gated layers of 300 units, z1 and z2 of 40 dimensions each, the KL a Monte Carlo
estimate at the draws as in their code; the protocol is the same. Norouzi et al. report -log p(x) =
227.37 nats for it. Its files are ``gated_vae_hvae_*.pt``, ``reproduce_hvae.*`` and ``log_hvae.txt``.

The run uses the course's own pieces: ``GatedVAE``, :func:`vae_lib.training.fit` with ``binarize`` and
``warmup_epochs``, and :func:`vae_lib.evaluation.iwae_bound`. It is resumable: every few epochs it
writes its state (weights, optimiser, best weights, history, random state) atomically to
``checkpoints/reproduce/``, and a new run continues from there. Results go to
``benchmarks/results/reproduce.json`` and ``.md``; the validation loss of every epoch is in the
JSON and in ``outputs/reproduce/log.txt``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vae_lib.checkpoints import atomic_save
from vae_lib.data import Split, load_data
from vae_lib.evaluation import iwae_bound
from vae_lib.likelihoods import binarize
from vae_lib.models import GatedVAE, TwoLevelGatedVAE
from vae_lib.training import History, can_fuse_adam, evaluate, fit
from vae_lib.utils import REPO_ROOT, check_device, checkpoint_dir, describe_device, get_device, outputs_dir, set_seed

RESULTS = REPO_ROOT / "benchmarks" / "results"
PAPERS = {
    "standard": {"nll": 228.70, "spread": 0.15, "source": "Norouzi et al. (2020), Exemplar VAE, Table 1: VAE with a "
                 "standard Gaussian prior, dynamically binarized Fashion-MNIST"},
    "vamp": {"nll": 227.35, "spread": 0.05, "source": "Norouzi et al. (2020), Exemplar VAE, Table 1: VAE with the "
             "VampPrior, dynamically binarized Fashion-MNIST"},
    # The issue quotes the mean only; the spread over their runs is not recorded here (None: not quoted).
    "hvae": {"nll": 227.37, "spread": None, "source": "Norouzi et al. (2020), Exemplar VAE, Table 1: HVAE (two "
             "levels) with a standard Gaussian prior, dynamically binarized Fashion-MNIST"},
}
#: The models ``--model`` runs: the one-level gated VAE and the paper's two-level HVAE.
MODELS = ("vae", "hvae")
PAPER = PAPERS["standard"]
#: Pseudo-inputs of the VampPrior run: Tomczak and Welling's (2018) K = 500.
VAMP_COMPONENTS = 500
STATE_VERSION = 2                  # 2: the fused AdamNormGrad (a state of version 1 is kept aside, not resumed)


@dataclass(frozen=True)
class Protocol:
    """Every number of the protocol; the defaults are the paper's."""

    n_train: int = 50_000
    n_val: int = 10_000
    latent_dim: int = 40
    hidden_dim: int = 300
    batch_size: int = 100
    lr: float = 5e-4
    warmup_epochs: int = 100
    patience: int = 50
    max_epochs: int = 2000
    importance_samples: int = 5000
    n_test: int | None = None          # None: all test images
    seed: int = 14                     # their default
    save_every: int = 5
    prior: str = "standard"            # or "vamp"
    components: int = 0                # the VampPrior's pseudo-inputs K (0 for the standard prior)
    model: str = "vae"                 # or "hvae": the two-level model (z1 and z2 of latent_dim each)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model == "hvae" and self.prior != "standard":
            raise ValueError("the HVAE runs with the standard prior only (the paper's HVAE row that we reproduce)")

    @property
    def full(self) -> bool:
        """Whether this is one of the paper's protocols (the only ones that write the real results)."""
        return self in FULL


#: The paper's protocols: one per prior for the VAE, then the HVAE's.
FULL = (Protocol(), Protocol(prior="vamp", components=VAMP_COMPONENTS), Protocol(model="hvae"))


SMOKE = Protocol(n_train=300, n_val=100, batch_size=50, warmup_epochs=2, patience=1, max_epochs=4,
                 importance_samples=20, n_test=50, save_every=1)
SMOKE_VAMP = Protocol(n_train=300, n_val=100, batch_size=50, warmup_epochs=2, patience=1, max_epochs=4,
                      importance_samples=20, n_test=50, save_every=1, prior="vamp", components=10)
SMOKE_HVAE = Protocol(n_train=300, n_val=100, batch_size=50, warmup_epochs=2, patience=1, max_epochs=4,
                      importance_samples=20, n_test=50, save_every=1, model="hvae")


def _stem(protocol: Protocol) -> str:
    """``gated_vae`` and ``reproduce`` for the VAE with the standard prior, with ``_vamp`` for the
    VampPrior and ``_hvae`` for the two-level model."""
    return ("" if protocol.model == "vae" else f"_{protocol.model}") + \
        ("" if protocol.prior == "standard" else f"_{protocol.prior}")


def protocol_dict(protocol: Protocol) -> dict:
    """The protocol's fields, without ``model`` while it is the default ``"vae"``: a saved state or a
    report of the VAE written before the field existed still matches."""
    fields = asdict(protocol)
    if fields["model"] == "vae":
        del fields["model"]
    return fields


def paper_for(protocol: Protocol) -> dict:
    """The paper's number for this protocol's model and prior (:data:`PAPERS`)."""
    return PAPERS["hvae" if protocol.model == "hvae" else protocol.prior]


def build(protocol: Protocol) -> torch.nn.Module:
    """A fresh model of the protocol: the gated VAE (with its prior), or the two-level HVAE."""
    if protocol.model == "hvae":
        return TwoLevelGatedVAE((protocol.latent_dim, protocol.latent_dim), protocol.hidden_dim)
    model = GatedVAE(protocol.latent_dim, protocol.hidden_dim)
    if protocol.prior != "standard":
        model.use_prior(protocol.prior, protocol.components)
    return model


class AdamNormGrad(torch.optim.Adam):
    """Adam on normalised gradients: each parameter's gradient is divided by its L2 norm (+ 1e-7)
    before the usual Adam update, as in the reference code's ``AdamNormGrad``.

    The update uses Adam's fused kernel where the device has one (see
    :func:`vae_lib.training.can_fuse_adam`), and the norms and divisions are done for all gradients at
    once (PyTorch's ``_foreach`` functions, which its own optimisers use). On the 2-core CPU, with one
    thread, a training step of the protocol took 11.8 ms this way against 13.2 ms dividing one
    gradient at a time before the default Adam; the update is the same (a test compares the two).
    """

    def __init__(self, params, lr: float = 1e-3):
        params = list(params)
        super().__init__(params, lr=lr, fused=True if can_fuse_adam(params) else None)

    @torch.no_grad()
    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norms = torch._foreach_norm(grads, 2)
            torch._foreach_add_(norms, 1e-7)
            torch._foreach_div_(grads, norms)
        return super().step(closure)


def splits(protocol: Protocol, device) -> tuple[Split, Split, Split]:
    """Training, validation (binarized once) and test (binarized once) splits, as the paper's code."""
    train, test = load_data("fashion-mnist", device=device)
    fit_part = train.subset(torch.arange(protocol.n_train, device=train.device))
    val_rows = torch.arange(len(train) - protocol.n_val, len(train), device=train.device)
    val = train.subset(val_rows)
    if protocol.n_test is not None:
        test = test.subset(torch.arange(protocol.n_test, device=test.device))
    generator = torch.Generator().manual_seed(777)       # their seed for binarizing validation and test
    val = Split(binarize(val.images, generator), val.labels, val.classes, val.dataset, train=False)
    test = test.with_images(binarize(test.images, generator))
    return fit_part, val, test


class Run:
    """The state of one training run of the protocol, saved and restored as a plain dict."""

    def __init__(self, protocol: Protocol, device, folder: Path):
        self.protocol, self.device = protocol, device
        self.path = folder / f"gated_vae{_stem(protocol)}_{'full' if protocol.full else 'smoke'}.pt"
        set_seed(protocol.seed)
        self.model = build(protocol).to(device)
        self.optimizer = AdamNormGrad(self.model.parameters(), lr=protocol.lr)
        self.epoch = 0
        self.best = {"loss": math.inf, "epoch": 0, "state": None}
        self.waited = 0
        self.val_loss: list[float] = []
        self.history = History()
        self.seconds = 0.0                 # wall time of training and validation, over all resumed runs
        self.done = False
        self.snapshot = None              # the state at the end of the last finished epoch
        self._clock = time.perf_counter()

    def state(self) -> dict:
        """Everything needed to continue exactly where the run is now (copies, not references)."""
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return copy.deepcopy({
            "version": STATE_VERSION, "protocol": protocol_dict(self.protocol), "epoch": self.epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "best_loss": self.best["loss"], "best_epoch": self.best["epoch"], "best_state": self.best["state"],
            "waited": self.waited, "val_loss": self.val_loss, "history": self.history.to_dict(),
            "seconds": self.seconds, "done": self.done, "rng": rng})

    def save(self, state: dict | None = None) -> None:
        """Write ``state`` (default: the run as it is now) atomically."""
        atomic_save(state if state is not None else self.state(), self.path)

    def keep_aside(self) -> Path:
        """Rename the saved state to a free name beside it (``..._unusable_1.pt``, ...); return that name."""
        n = 1
        while (kept := self.path.with_name(f"{self.path.stem}_unusable_{n}{self.path.suffix}")).exists():
            n += 1
        self.path.rename(kept)
        return kept

    def resume(self, log) -> bool:
        """Continue from the saved state if there is one for this protocol; say so."""
        if not self.path.is_file():
            return False
        try:
            s = torch.load(self.path, map_location=self.device, weights_only=True)
            if s.get("version") != STATE_VERSION or s.get("protocol") != protocol_dict(self.protocol):
                raise ValueError("it was written for another protocol or version")
            self.model.load_state_dict(s["model"])
            self.optimizer.load_state_dict(s["optimizer"])
            self.epoch, self.waited, self.seconds, self.done = s["epoch"], s["waited"], s["seconds"], s["done"]
            self.best = {"loss": s["best_loss"], "epoch": s["best_epoch"], "state": s["best_state"]}
            self.val_loss = list(s["val_loss"])
            self.history = History.from_dict(s["history"])
            torch.set_rng_state(s["rng"]["cpu"].cpu())
            if "cuda" in s["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([t.cpu() for t in s["rng"]["cuda"]])
        except Exception as err:  # noqa: BLE001 - any unusable file: keep it aside, start afresh, say why
            kept = self.keep_aside()
            log(f"Cannot resume from {self.path} ({type(err).__name__}: {err}); it is kept as {kept} (nothing "
                "is overwritten: delete it when you no longer need it). Starting from epoch 1.")
            self.__init__(self.protocol, self.device, self.path.parent)
            return False
        log(f"Resuming from {self.path}: {self.epoch} epochs done, best validation -ELBO "
            f"{self.best['loss']:.3f} at epoch {self.best['epoch']}.")
        return True

    def after_epoch(self, epoch: int, history: History, val: Split, log, bar) -> bool:
        """Early stopping as the reference code does it; returns True to stop."""
        p = self.protocol
        self.epoch = epoch
        for name in ("train_loss", "train_recon", "train_kl", "train_objective", "beta", "seconds"):
            getattr(self.history, name).append(getattr(history, name)[-1])
        loss = evaluate(self.model, val)["loss"]          # -ELBO with the KL weight 1, on the fixed binary images
        now = time.perf_counter()
        self.seconds += now - self._clock
        self._clock = now
        self.val_loss.append(loss)
        if loss < self.best["loss"]:
            self.best = {"loss": loss, "epoch": epoch,
                         "state": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
            self.waited = 0
        else:
            self.waited += 1
            if epoch < p.warmup_epochs:
                self.waited = 0
        stop = self.waited > p.patience or not math.isfinite(loss) or epoch >= p.max_epochs
        self.done = stop
        self.snapshot = self.state()   # what an interrupt in the next epoch saves: the end of this one
        log(f"epoch {epoch}: beta {history.beta[-1]:.3f}, train -ELBO {history.train_loss[-1]:.3f}, "
            f"validation -ELBO {loss:.3f} (best {self.best['loss']:.3f} at epoch {self.best['epoch']}), "
            f"{history.seconds[-1]:.1f} s", to_screen=False)
        bar.set_postfix(val=f"{loss:.2f}", best=f"{self.best['loss']:.2f}@{self.best['epoch']}", refresh=False)
        bar.update(1)
        if stop or epoch % p.save_every == 0:
            self.save()
        return stop


def evaluate_test(run: Run, test: Split, log) -> dict:
    """-log p(x) of the best weights on the test images by IWAE with the protocol's samples."""
    run.model.load_state_dict(run.best["state"] if run.best["state"] is not None else run.model.state_dict())
    run.model.eval()
    start = time.perf_counter()
    bound = iwae_bound(run.model, test.images, run.protocol.importance_samples,
                       generator=torch.Generator().manual_seed(0), progress=True)
    nll = -bound
    seconds = time.perf_counter() - start
    elbo = evaluate(run.model, test)
    result = {"nll": nll.mean().item(), "nll_se": (nll.std() / math.sqrt(len(nll))).item(),
              "test_elbo": elbo["loss"], "test_kl": elbo["kl"], "eval_seconds": seconds}
    if hasattr(run.model, "layer_slices"):      # the HVAE: how much of the KL each layer carries
        result["test_kl_layers"] = layer_kls(run.model, test)
    log(f"test: -log p(x) = {result['nll']:.3f} +- {result['nll_se']:.3f} nats (IWAE_{run.protocol.importance_samples}, "
        f"{len(test)} images, {seconds:.0f} s); -ELBO {elbo['loss']:.3f}")
    return result


@torch.no_grad()
def layer_kls(model: torch.nn.Module, split: Split, batch_size: int = 1000) -> list[float]:
    """The mean KL term of each latent layer over ``split``'s images (one draw of q per image), z_1 first;
    they add up to the test KL that ``evaluate`` reports."""
    model.eval()
    totals = torch.zeros(len(model.layer_slices()), dtype=torch.float64)
    for start in range(0, len(split), batch_size):
        kl = model.loss_terms(split.images[start:start + batch_size], validate=False)[1].double().cpu()
        totals += torch.stack([kl[:, s].sum() for s in model.layer_slices()])
    return (totals / len(split)).tolist()


def markdown(report: dict) -> str:
    """The results as a short Markdown report."""
    r, p = report, report["protocol"]
    hvae = p.get("model", "vae") == "hvae"
    paper = PAPERS["hvae" if hvae else p.get("prior", "standard")]
    prior = "" if p.get("prior", "standard") == "standard" else f" with the VampPrior (K = {p['components']})"
    command = "python -m benchmarks.reproduce" + (" --prior vamp" if prior else "") + (" --model hvae" if hvae else "")
    spread = "not quoted" if paper["spread"] is None else f"{paper['spread']:.2f} (over runs)"
    what = "two-level HVAE (z1 and z2 of 40 dimensions)" if hvae else "VAE"
    layers = (f" The KL per layer on the test images: z1 {r['test_kl_layers'][0]:.2f}, z2 {r['test_kl_layers'][1]:.2f} "
              "nats." if "test_kl_layers" in r else "")
    lines = [
        f"### Reproducing the {what}{prior} of Norouzi et al. (2020) on dynamically binarized Fashion-MNIST",
        "",
        f"Machine: {r['machine']}; torch {r['torch']}; {r['date']}. Protocol: {p['n_train']:,} training and "
        f"{p['n_val']:,} validation images, batch {p['batch_size']}, AdamNormGrad lr {p['lr']}, KL warm-up "
        f"{p['warmup_epochs']} epochs, patience {p['patience']}, at most {p['max_epochs']} epochs, "
        f"IWAE with {p['importance_samples']} samples on {r['n_test']:,} test images.",
        "",
        "| | -log p(x), nats | ± | epochs run | best epoch | training | evaluation |",
        "|---|---|---|---|---|---|---|",
        f"| this course (`{command}`) | {r['nll']:.2f} | {r['nll_se']:.2f} (s.e. over test images) "
        f"| {r['epochs_run']} | {r['best_epoch']} | {r['train_hours']:.2f} h | {r['eval_seconds'] / 60:.1f} min |",
        f"| {paper['source']} | {paper['nll']:.2f} | {spread} | | | | |",
        "",
        f"Difference: {r['difference']:+.2f} nats (ours minus the paper's). Best validation -ELBO "
        f"{r['best_val_loss']:.2f}; test -ELBO of the same weights {r['test_elbo']:.2f} (KL {r['test_kl']:.2f}).{layers}",
        "",
        f"Training time is wall-clock time over all resumed runs, validation included; it also counts any time the "
        f"run was paused or shared the machine. The median training epoch took {r['median_epoch_seconds']:.2f} s.",
    ]
    return "\n".join(lines) + "\n"


def machine(device) -> str:
    """The device in words, with the CPU's model name where Linux tells it."""
    words = describe_device(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{words}; {line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{words}; {platform.machine()}"


def run_protocol(protocol: Protocol, out: Path, folder: Path, device, log_path: Path) -> int:
    """Train (or resume) and evaluate by ``protocol``; write ``reproduce.json`` and ``.md`` to ``out``.

    Any protocol other than the paper's writes ``reproduce_smoke.*`` instead, so that a test can never
    overwrite the real results; the VampPrior's runs write ``reproduce_vamp.*`` (``reproduce_vamp_smoke.*``),
    the HVAE's ``reproduce_hvae.*`` (``reproduce_hvae_smoke.*``).
    Returns 0 when done, 130 when interrupted (the state is saved; run again to continue).
    """
    smoke = not protocol.full
    paper = paper_for(protocol)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str, to_screen: bool = True) -> None:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if to_screen:
            tqdm.write(line)

    log(f"{date.today()}: reproducing on {describe_device(device)}, protocol {protocol_dict(protocol)}")
    train, val, test = splits(protocol, device)
    run = Run(protocol, device, folder)
    run.resume(log)
    run.snapshot = run.state()            # an interrupt before the first epoch ends saves this
    bar = tqdm(total=protocol.max_epochs, initial=run.epoch, desc="epochs", unit="epoch")
    if not run.done:
        run._clock = time.perf_counter()
        history = fit(run.model, train, epochs=protocol.max_epochs - run.epoch, batch_size=protocol.batch_size,
                      optimizer=run.optimizer, binarize=True, warmup_epochs=protocol.warmup_epochs,
                      first_epoch=run.epoch + 1, progress=False,
                      callback=lambda epoch, h: run.after_epoch(epoch, h, val, log, bar))
        if history.interrupted:
            run.save(run.snapshot)         # the end of the last finished epoch, not the half-done one
            bar.close()
            log(f"Interrupted after epoch {run.epoch}; the state is saved in {run.path}. Run again to continue.")
            return 130
        run.done = True
        run.save()
    bar.close()
    result = evaluate_test(run, test, log)
    report = {
        "protocol": protocol_dict(protocol), "smoke": smoke, "machine": machine(device),
        "torch": torch.__version__, "python": platform.python_version(), "date": str(date.today()),
        "n_test": len(test), **result, "paper_nll": paper["nll"], "paper_spread": paper["spread"],
        "paper_source": paper["source"], "difference": result["nll"] - paper["nll"],
        "epochs_run": run.epoch, "best_epoch": run.best["epoch"], "best_val_loss": run.best["loss"],
        "train_hours": run.seconds / 3600, "median_epoch_seconds": statistics.median(run.history.seconds or [0.0]),
        "val_loss": run.val_loss, "train_loss": run.history.train_loss,
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = f"reproduce{_stem(protocol)}" + ("_smoke" if smoke else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text(markdown(report), encoding="utf-8")
    log(f"wrote {out / (stem + '.json')} and .md")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the same code on a few hundred images (a test)")
    parser.add_argument("--prior", choices=("standard", "vamp"), default="standard",
                        help=f"the prior: the standard normal, or the VampPrior with K = {VAMP_COMPONENTS} pseudo-inputs")
    parser.add_argument("--model", choices=MODELS, default="vae",
                        help="the one-level gated VAE, or the paper's two-level HVAE (standard prior only)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for reproduce.json and reproduce.md")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="folder for the resumable state (default: checkpoints/reproduce)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the fastest available)")
    args = parser.parse_args(argv)
    if args.model == "hvae" and args.prior != "standard":
        parser.error(f"--model hvae runs with the standard prior only (the paper's HVAE row we reproduce); "
                     f"drop --prior {args.prior}")
    try:
        device = check_device(args.device, "--device") if args.device else get_device(verbose=False)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = args.checkpoints or checkpoint_dir() / "reproduce"
    vamp, hvae = args.prior == "vamp", args.model == "hvae"
    protocol = (SMOKE_HVAE if hvae else SMOKE_VAMP if vamp else SMOKE) if args.smoke else FULL[2 if hvae else 1 if vamp else 0]
    log_path = outputs_dir() / "reproduce" / f"log{_stem(protocol)}{'_smoke' if args.smoke else ''}.txt"
    return run_protocol(protocol, args.out, folder, device, log_path)


if __name__ == "__main__":
    sys.exit(main())
