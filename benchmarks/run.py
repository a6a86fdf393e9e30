"""Training-speed benchmarks: the textbook pipeline against the course's, on one machine, in one run.

    python -m benchmarks.run                 # every variant this device supports
    python -m benchmarks.run --epochs 4      # quicker, less precise
    python -m benchmarks.run --course        # make bench: also every notebook's wall time under nbval

The model is the seed's (784-400-2 MLP VAE, batch 128, Adam 1e-3) on the full training split.
Variants:
  textbook    torchvision data set + per-sample ToTensor + DataLoader(shuffle=True), the seed's loop
  course      vae_lib's fit: the split resident on the device as one tensor, batches drawn by
              index, Adam's fused kernel
  large-batch the course's pipeline with batch 1024 and Adam lr 4e-3: fewer, bigger steps. Of the
              (batch, lr) pairs tried on the 2-core CPU, (512, 2e-3), (512, 3e-3), (1024, 3e-3)
              and (1024, 4e-3), this one had the lowest test loss after 10 epochs
  cuda-graph  (CUDA only) the course's step captured once as a CUDA graph and replayed, which
              removes the per-kernel launch overhead, large next to such a small model's arithmetic
  conv        notebook 08's convolutional VAE (16/32 feature maps, latent 2, batch 128, Adam 3e-3) on
              the course's pipeline, with a floor from its own FLOPs and the time of each layer alone
Each variant trains a fresh model from the same initial weights for ``--epochs`` epochs. Seconds per
epoch are the median over the epochs after the first (the warm-up), images per second follow from
it, and the test loss (negative ELBO per image) is measured after the last epoch: speed must not
cost ELBO. A floor is computed from the FLOPs of one epoch (forward and backward matmuls) divided by
the matmul throughput measured here, in the same run (on a GPU a matmul this small is bound by its
launch latency, so the throughput is far below the GPU's peak and the floor is easier to approach).
The course variant is then taken apart: the time of each part of its step, and of its matmuls
alone. Results go to ``benchmarks/results/<device>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision

from vae_lib.models.conv import ConvVAE, conv_vae_flops
from vae_lib.data import dataset_name, load_data
from vae_lib.losses import bernoulli_nll
from vae_lib.models import VAE
from vae_lib.pipelines import textbook_epoch, textbook_loader
from vae_lib.training import adam, evaluate, model_loss
from vae_lib.utils import REPO_ROOT, describe_device, get_device, set_seed

RESULTS = REPO_ROOT / "benchmarks" / "results"
LATENT, HIDDEN, INPUT = 2, 400, 784


# --- the floor -------------------------------------------------------------------------------

def epoch_flops(n: int, batch: int = 128, hidden: int = HIDDEN, latent: int = LATENT) -> float:
    """Matmul FLOPs of one training epoch (forward + backward) of the seed's VAE on ``n`` images.

    Each linear layer costs 2*in*out per image forward, as much again for the weight gradient, and
    as much again for the input gradient, except the first layer, whose input (the data) needs none.
    """
    layers = [(INPUT, hidden), (hidden, latent), (hidden, latent), (latent, hidden), (hidden, INPUT)]
    fwd = sum(2 * i * o for i, o in layers)
    weight_grad = fwd
    input_grad = fwd - 2 * INPUT * hidden
    return float(n) * (fwd + weight_grad + input_grad)


def matmul_throughput(device: torch.device, batch: int = 128, repeats: int = 200) -> float:
    """FLOP/s of the model's dominant matmul shape, (batch x 784) @ (784 x 400), measured here."""
    a = torch.randn(batch, INPUT, device=device)
    b = torch.randn(INPUT, HIDDEN, device=device)
    c = torch.empty(batch, HIDDEN, device=device)
    d = torch.randn(HIDDEN, INPUT, device=device)
    e = torch.empty(batch, INPUT, device=device)
    for _ in range(20):
        torch.mm(a, b, out=c)
        torch.mm(c, d, out=e)
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=c)
            torch.mm(c, d, out=e)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return repeats * 2 * (2 * batch * INPUT * HIDDEN) / best


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer measures the work and not its queueing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --- the variants ----------------------------------------------------------------------------

def fresh_model(device, init_state):
    model = VAE(LATENT, HIDDEN).to(device)
    model.load_state_dict(init_state)
    return model


def course_epochs(model, train, epochs, batch, lr, device):
    """The course's loop (vae_lib.training.fit's step, with its fused Adam), timed per epoch."""
    opt = adam(model.parameters(), lr=lr)
    seconds = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        for x, _ in train.batches(batch):
            terms = model_loss(model, x, reduction="sum", validate=False)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def textbook_epochs(model, dataset, epochs, batch, lr, device):
    loader = textbook_loader(dataset, batch_size=batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seconds = []
    for _ in range(epochs):
        sync(device)
        seconds.append(textbook_epoch(model, loader, opt)["seconds"])
    return seconds


def cuda_graph_epochs(model, train, epochs, batch, lr, device):
    """The course's step captured as one CUDA graph (forward, backward and Adam) and replayed.

    Full batches replay the graph; the final partial batch of an epoch runs eagerly with the same
    optimizer, so every image is seen once per epoch as in the other variants. Adam is PyTorch's
    multi-tensor kernel with ``capturable=True`` (its state lives on the GPU, as capture requires).
    The warm-up and the capture happen before the first timed epoch, and their seconds are printed.
    Nothing inside the captured step may wait for the GPU: ``validate=False`` keeps the loss free
    of value checks.
    """
    with torch.cuda.device(device):
        setup = time.perf_counter()
        opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)
        n = len(train)
        full = n // batch
        static_idx = torch.zeros(batch, dtype=torch.long, device=device)
        initial = [p.detach().clone() for p in model.parameters()]

        def step():
            x = train.images[static_idx]
            loss = model_loss(model, x, reduction="sum", validate=False).loss
            loss.backward()
            opt.step()
            return loss

        # Warm up on a side stream (required before capture), with real batches. A capturable
        # optimizer stepping outside a capture warns once; here that is intended.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(3):
                static_idx.copy_(torch.randint(0, n, (batch,), device=device))
                opt.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)  # the captured backward then owns the .grad tensors
        with torch.cuda.graph(graph):
            step()
        # Undo the warm-up's three training steps in place (the graph holds these very tensors), so
        # that this variant starts from the same weights and optimizer state as the others.
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), initial):
                p.copy_(p0)
            for state in opt.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
        torch.cuda.synchronize(device)
        print(f"  warm-up and capture: {time.perf_counter() - setup:.2f} s (not timed)", flush=True)
        seconds = []
        for _ in range(epochs):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            order = torch.randperm(n, device=device)
            for i in range(full):
                static_idx.copy_(order[i * batch:(i + 1) * batch])
                graph.replay()  # the captured backward overwrites the .grad tensors in place
            rest = order[full * batch:]
            if len(rest):
                # Zero the captured gradient tensors in place (not set_to_none), so that the eager
                # backward adds into the memory the graph's optimizer step reads.
                for p in model.parameters():
                    p.grad.zero_()
                model_loss(model, train.images[rest], reduction="sum", validate=False).loss.backward()
                opt.step()
            torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
        return seconds


# --- where a step's time goes ----------------------------------------------------------------

def _per_call_ms(fn, device, repeats: int = 100, rounds: int = 5) -> float:
    """Milliseconds per call of ``fn``: the best of ``rounds`` rounds of ``repeats`` calls."""
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best / repeats * 1e3


def step_anatomy(train, init_state, device, batch: int = 128, lr: float = 1e-3, steps: int = 300) -> dict:
    """Milliseconds per step in each part of the course's training step, and in pieces of it alone.

    The step runs ``steps`` times on real batches, timed part by part: drawing the batch, the
    forward pass with the loss, the backward pass, and Adam's update (fused, as in ``fit``; then the
    default multi-tensor kernel for comparison). On a GPU each part ends with a synchronisation.
    Alone: the five large matmuls of a step (the (batch x 784) x (784 x 400) products of the forward
    and backward passes, which make up the floor) and the Bernoulli loss's forward and backward.
    """
    if steps + 20 > len(train) // batch:
        raise ValueError(f"step_anatomy needs at least {steps + 20} batches of {batch}; the split has {len(train) // batch}")
    parts = {}
    for kernel, make in (("fused", adam), ("default", lambda ps, lr: torch.optim.Adam(ps, lr=lr))):
        model = fresh_model(device, init_state)
        opt = make(model.parameters(), lr=lr)
        times = dict.fromkeys(("batch", "forward", "backward", "adam"), 0.0)
        batches = iter(train.batches(batch))
        for i in range(steps + 20):  # the first 20 steps are the warm-up
            sync(device)
            t0 = time.perf_counter()
            x, _ = next(batches)
            sync(device)
            t1 = time.perf_counter()
            loss = model_loss(model, x, reduction="sum", validate=False).loss
            sync(device)
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sync(device)
            t3 = time.perf_counter()
            opt.step()
            sync(device)
            t4 = time.perf_counter()
            if i >= 20:
                for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    times[name] += seconds
        if kernel == "fused":
            parts = {name: seconds / steps * 1e3 for name, seconds in times.items()}
        else:
            parts["adam_default_kernel"] = times["adam"] / steps * 1e3
    parts["total"] = parts["batch"] + parts["forward"] + parts["backward"] + parts["adam"]

    x = train.images[:batch]
    w1 = torch.randn(HIDDEN, INPUT, device=device)
    w4 = torch.randn(INPUT, HIDDEN, device=device)
    grad_out = torch.randn(batch, INPUT, device=device)

    def matmuls():
        h = x @ w1.t()             # fc1's forward:         (b x 784) (784 x 400)
        h @ w4.t()                 # fc4's forward:         (b x 400) (400 x 784)
        grad_h = grad_out @ w4     # fc4's input gradient:  (b x 784) (784 x 400)
        grad_out.t() @ h           # fc4's weight gradient: (784 x b) (b x 400)
        grad_h.t() @ x             # fc1's weight gradient: (400 x b) (b x 784)

    logits = torch.randn(batch, INPUT, device=device, requires_grad=True)

    def bernoulli_loss():
        bernoulli_nll(logits, x, reduction="sum", validate=False).backward()

    return {"batch_size": batch, "steps": steps, "ms_per_step": parts,
            "matmuls_alone_ms": _per_call_ms(matmuls, device),
            "bernoulli_loss_alone_ms": _per_call_ms(bernoulli_loss, device)}


# --- the convolutional VAE (notebook 08) -----------------------------------------------------

CONV_CHANNELS, CONV_LR = 16, 3e-3


def conv_layer_ms(model: ConvVAE, device, batch: int = 128) -> dict:
    """Milliseconds of each layer's forward and backward pass alone, at ``batch``, with its FLOPs.

    The backward pass computes the weights' gradient and, except for the first layer (its input is
    the data), the input's gradient, as in training.
    """
    c1, c2 = model.channels, 2 * model.channels
    shapes = {"conv1": (1, 28), "conv2": (c1, 14), "deconv1": (c2, 7), "deconv2": (c1, 14)}
    rows = {}
    for name, (channels, side) in shapes.items():
        layer = getattr(model, name)
        x = torch.randn(batch, channels, side, side, device=device).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(name != "conv1")

        def fwd_bwd(layer=layer, x=x):
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()

        with torch.no_grad():
            out = layer(x)
        per_pixel = 2 * layer.in_channels * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
        pixels = out.shape[-1] ** 2 if name.startswith("conv") else side * side
        passes = 2 if name == "conv1" else 3
        flop = passes * per_pixel * pixels * batch
        ms = _per_call_ms(fwd_bwd, device, repeats=30)
        rows[name] = {"ms": ms, "gflop": flop / 1e9, "gflops_per_s": flop / (ms / 1e3) / 1e9}
    return rows


def conv_benchmark(train, test, device, epochs: int, throughput: float, batch: int = 128) -> dict:
    """One epoch of notebook 08's conv VAE on the course's pipeline, against its own FLOP floor."""
    set_seed(0)
    model = ConvVAE(latent_dim=2, channels=CONV_CHANNELS).to(device)
    reset_peak_memory(device)
    seconds = course_epochs(model, train, epochs, batch, CONV_LR, device)
    median = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    flops = conv_vae_flops(model)["training"] * len(train)
    return {"channels": CONV_CHANNELS, "latent_dim": 2, "batch_size": batch, "lr": CONV_LR, "epochs": epochs,
            "seconds_per_epoch": median, "seconds_all_epochs": seconds, "peak_memory_mb": peak_memory_mb(device),
            "test_loss": evaluate(model, test)["loss"], "epoch_gflop": flops / 1e9,
            "floor_seconds": flops / throughput, "ratio_to_floor": median / (flops / throughput),
            "layers": conv_layer_ms(model, device, batch), "steps_per_epoch": -(-len(train) // batch)}


# --- running ---------------------------------------------------------------------------------

_PROC_STATUS = Path("/proc/self/status")        # Linux: VmHWM is the peak resident set
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")  # Linux >= 4.0: writing "5" resets VmHWM


def reset_peak_memory(device) -> None:
    """Start a new peak-memory measurement (on Linux, by resetting the process's peak RSS)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _PROC_CLEAR_REFS.write_text("5")  # the peak restarts from the current resident set
    except OSError:
        pass  # elsewhere the peak is the process's, since it started


def peak_memory_mb(device) -> float:
    """CUDA: the most memory PyTorch allocated on the GPU since the reset. CPU: the process's peak
    resident set since the reset, which includes PyTorch itself and the resident data set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux kB; since the process started


def run_variant(name, fn, model, test, epochs, batch, lr, device):
    reset_peak_memory(device)
    set_seed(1)
    seconds = fn(model, epochs, batch, lr)
    median = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    test_loss = evaluate(model, test)["loss"]
    return {
        "variant": name, "batch_size": batch, "lr": lr, "epochs": epochs,
        "seconds_per_epoch": median, "seconds_all_epochs": seconds,
        "images_per_second": None, "peak_memory_mb": peak_memory_mb(device), "test_loss": test_loss,
    }


def course_under_nbval(dataset: str) -> list[dict]:
    """Wall time of each notebook under nbval, in order, starting with no cached checkpoints."""
    import os
    import tempfile

    env = dict(os.environ, VAE_DATASET=dataset, VAE_CHECKPOINT_DIR=tempfile.mkdtemp(prefix="bench-ckpt-"),
               VAE_FIGURES_DIR=tempfile.mkdtemp(prefix="bench-fig-"))
    rows = []
    for nb in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", str(nb), "--nbval-lax", "--nbval-current-env", "-q",
             "-p", "no:cacheprovider"], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
        rows.append({"notebook": nb.name, "seconds": time.perf_counter() - start,
                     "passed": result.returncode == 0})
        if result.returncode != 0:  # keep why: a FAILED row alone cannot be acted on
            plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # without the terminal's colours
            rows[-1]["output_tail"] = plain[-6000:]
        print(f"  {nb.name:<40}{rows[-1]['seconds']:7.1f} s  {'passed' if rows[-1]['passed'] else 'FAILED'}", flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"### {report['device']}",
        "",
        f"{report['dataset']}, the seed's model (784-400-2), {report['epochs']} epochs per variant; "
        f"torch {report['torch']}, torchvision {report['torchvision']}, Python {report['python']}; {report['date']}.",
        "",
        "| variant | batch | lr | s / epoch | images / s | × textbook | × floor | peak memory (MiB) | test -ELBO |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["variants"]:
        lines.append(
            f"| {r['variant']} | {r['batch_size']} | {r['lr']:g} | {r['seconds_per_epoch']:.3f} | "
            f"{r['images_per_second']:,.0f} | {r['ratio_to_textbook']:.3f} | {r['ratio_to_floor']:.2f} | "
            f"{r['peak_memory_mb']:,.0f} | {r['test_loss']:.2f} |")
    f = report["floor"]
    lines += [
        "",
        f"Floor: {f['epoch_gflop']:.1f} GFLOP per epoch (forward + backward matmuls) at the measured "
        f"{f['matmul_gflops']:.1f} GFLOP/s = {f['seconds']:.3f} s per epoch.",
        "",
        "Peak memory: on a GPU, the most PyTorch allocated there during the variant; on a CPU, the "
        "process's peak resident memory during the variant. Both include the resident training and "
        "test splits (about 210 MiB), which the textbook variant does not use.",
    ]
    a = report.get("anatomy")
    if a:
        ms, total = a["ms_per_step"], a["ms_per_step"]["total"]
        lines += [
            "",
            f"Where a course step's time goes (batch {a['batch_size']}, mean of {a['steps']} steps, each part timed on its own):",
            "",
            "| part of the step | ms per step | share |",
            "|---|---|---|",
        ]
        for key, label in (("batch", "draw the batch (index into the resident tensor)"),
                           ("forward", "forward pass and loss"), ("backward", "zero the gradients, backward pass"),
                           ("adam", "Adam's update (fused kernel)")):
            lines.append(f"| {label} | {ms[key]:.3f} | {ms[key] / total:.0%} |")
        lines += [
            f"| **step** | **{total:.3f}** | |",
            "",
            f"Alone: the step's five large matmuls take {a['matmuls_alone_ms']:.3f} ms "
            f"(the floor per step is {a['floor_ms']:.3f} ms); the Bernoulli loss, forward and backward, "
            f"{a['bernoulli_loss_alone_ms']:.3f} ms. Adam's default multi-tensor kernel takes "
            f"{ms['adam_default_kernel']:.3f} ms per step where the fused one takes {ms['adam']:.3f} ms.",
        ]
    c = report.get("conv")
    if c:
        lines += [
            "",
            f"Notebook 08's convolutional VAE ({c['channels']}/{2 * c['channels']} feature maps, latent {c['latent_dim']}, "
            f"batch {c['batch_size']}, Adam {c['lr']:g}, {c['epochs']} epochs): {c['seconds_per_epoch']:.3f} s per epoch, "
            f"test -ELBO {c['test_loss']:.2f}. Its floor: {c['epoch_gflop']:.1f} GFLOP per epoch at the same "
            f"{f['matmul_gflops']:.1f} GFLOP/s = {c['floor_seconds']:.3f} s, so the epoch takes "
            f"{c['ratio_to_floor']:.1f}x its floor.",
            "",
            "| layer, forward and backward alone | ms per step | GFLOP | GFLOP/s |",
            "|---|---|---|---|",
        ]
        for name, row in c["layers"].items():
            lines.append(f"| {name} | {row['ms']:.3f} | {row['gflop']:.3f} | {row['gflops_per_s']:.1f} |")
        per_step = sum(row["ms"] for row in c["layers"].values())
        lines += ["", f"The four convolutions alone take {per_step:.2f} ms of a step, "
                      f"{per_step * c['steps_per_epoch'] / 1e3:.2f} s of an epoch."]
    if report.get("course"):
        total = sum(r["seconds"] for r in report["course"])
        lines += ["", "| notebook under nbval (no checkpoints cached) | seconds |", "|---|---|"]
        lines += [f"| {r['notebook']}{'' if r['passed'] else ' (FAILED)'} | {r['seconds']:.1f} |" for r in report["course"]]
        lines += [f"| **all notebooks** | **{total:.1f}** |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="epochs per variant; the first is the warm-up (default 10)")
    p.add_argument("--dataset", default=None, help="fashion-mnist, mnist or mnist-5k (default: $VAE_DATASET or fashion-mnist)")
    p.add_argument("--variants", nargs="*", default=None, help="a subset of: textbook course large-batch cuda-graph conv")
    p.add_argument("--course", action="store_true", help="also time every notebook under nbval")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and Markdown results")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (one warm-up epoch plus at least one timed)")
    dataset = dataset_name(args.dataset)
    device = get_device()
    train, test = load_data(dataset, device=device)
    set_seed(0)
    init_state = VAE(LATENT, HIDDEN).state_dict()

    variants = {
        "textbook": (128, 1e-3, lambda m, e, b, lr: textbook_epochs(m, dataset, e, b, lr, device)),
        "course": (128, 1e-3, lambda m, e, b, lr: course_epochs(m, train, e, b, lr, device)),
        "large-batch": (1024, 4e-3, lambda m, e, b, lr: course_epochs(m, train, e, b, lr, device)),
    }
    if device.type == "cuda":
        variants["cuda-graph"] = (128, 1e-3, lambda m, e, b, lr: cuda_graph_epochs(m, train, e, b, lr, device))
    chosen = args.variants or list(variants) + ["conv"]
    unknown = set(chosen) - set(variants) - {"conv"}
    if unknown:
        p.error(f"unknown or unsupported variants on {device.type}: {sorted(unknown)}; choose from {list(variants)}")
    if "textbook" not in chosen:
        chosen = ["textbook"] + chosen  # every ratio is to the textbook pipeline

    flops = epoch_flops(len(train))
    throughput = matmul_throughput(device)
    floor_seconds = flops / throughput
    print(f"floor: {flops / 1e9:.1f} GFLOP per epoch at {throughput / 1e9:.1f} GFLOP/s = {floor_seconds:.3f} s", flush=True)

    rows = []
    for name in (v for v in chosen if v in variants):
        batch, lr, fn = variants[name]
        print(f"{name}: {args.epochs} epochs ...", flush=True)
        row = run_variant(name, fn, fresh_model(device, init_state), test, args.epochs, batch, lr, device)
        row["images_per_second"] = len(train) / row["seconds_per_epoch"]
        rows.append(row)
        print(f"  {row['seconds_per_epoch']:.3f} s/epoch, test -ELBO {row['test_loss']:.2f}", flush=True)
    base = rows[0]["seconds_per_epoch"]
    for r in rows:
        r["ratio_to_textbook"] = r["seconds_per_epoch"] / base
        r["ratio_to_floor"] = r["seconds_per_epoch"] / floor_seconds
        r["test_loss_vs_textbook"] = r["test_loss"] / rows[0]["test_loss"] - 1

    report = {
        "device": describe_device(device), "dataset": dataset, "epochs": args.epochs,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "floor": {"epoch_gflop": flops / 1e9, "matmul_gflops": throughput / 1e9, "seconds": floor_seconds},
        "variants": rows,
    }
    if "course" in chosen:
        print("where a course step's time goes ...", flush=True)
        anatomy = step_anatomy(train, init_state, device)
        anatomy["floor_ms"] = floor_seconds / (len(train) / anatomy["batch_size"]) * 1e3
        report["anatomy"] = anatomy
    if "conv" in chosen:
        print(f"conv: {args.epochs} epochs ...", flush=True)
        report["conv"] = conv_benchmark(train, test, device, args.epochs, throughput)
        print(f"  {report['conv']['seconds_per_epoch']:.3f} s/epoch, {report['conv']['ratio_to_floor']:.2f}x its floor",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = device.type

    def save() -> None:
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
        (args.out / f"{stem}.md").write_text(markdown(report))

    if args.course:
        save()  # the variants' results are kept even if the course run is stopped
        print("the course under nbval:", flush=True)
        report["course"] = course_under_nbval(dataset)
    save()
    print()
    print(markdown(report))
    print(f"written to {args.out / stem}.json and .md")
    failed = [r["notebook"] for r in report.get("course", []) if not r["passed"]]
    if failed:
        print(f"failed under nbval: {', '.join(failed)} (their output's tail is in {stem}.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
