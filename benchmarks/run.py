"""Training-speed benchmarks: the textbook pipeline against the course's, on one machine, in one run.

    python -m benchmarks.run                 # make bench: every variant this device supports
    python -m benchmarks.run --epochs 4      # quicker, less precise
    python -m benchmarks.run --course        # also the wall time of every notebook under nbval

The model is the seed's (784-400-2 MLP VAE, batch 128, Adam 1e-3) on the full training split.
Variants:
  textbook    torchvision data set + per-sample ToTensor + DataLoader(shuffle=True), the seed's loop
  course      vae_lib: the split resident on the device as one tensor, batches drawn by index
  large-batch the course's pipeline with batch 1024 and Adam lr 3e-3 (fewer, bigger steps)
  cuda-graph  (CUDA only) the course's step captured once as a CUDA graph and replayed, which
              removes the per-kernel launch overhead that dominates such a small model on a GPU
Each variant trains a fresh model from the same initial weights for ``--epochs`` epochs. Seconds per
epoch are the median over the epochs after the first (the warm-up), images per second follow from
it, and the test loss (negative ELBO per image) is measured after the last epoch: speed must not
cost ELBO. A floor is computed from the FLOPs of one epoch (forward and backward matmuls) divided by
the matmul throughput measured here, in the same run. Results go to
``benchmarks/results/<device>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision

from vae_lib.data import dataset_name, load_data
from vae_lib.models import VAE
from vae_lib.pipelines import textbook_epoch, textbook_loader
from vae_lib.training import evaluate, model_loss
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
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the variants ----------------------------------------------------------------------------

def fresh_model(device, init_state):
    model = VAE(LATENT, HIDDEN).to(device)
    model.load_state_dict(init_state)
    return model


def course_epochs(model, train, epochs, batch, lr, device):
    """The course's loop (vae_lib.training.fit's step), timed per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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
    optimizer, so every image is seen once per epoch as in the other variants.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)
    n = len(train)
    full = n // batch
    static_idx = torch.zeros(batch, dtype=torch.long, device=device)

    def step():
        x = train.images[static_idx]
        loss = model_loss(model, x, reduction="sum", validate=False).loss
        loss.backward()
        opt.step()
        return loss

    # Warm up on a side stream (required before capture), with real batches.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            static_idx.copy_(torch.randint(0, n, (batch,), device=device))
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    seconds = []
    for _ in range(epochs):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        for i in range(full):
            static_idx.copy_(order[i * batch:(i + 1) * batch])
            graph.replay()  # gradients are overwritten in place by the captured backward
        rest = order[full * batch:]
        if len(rest):
            # Zero the captured gradient tensors in place so that the eager backward writes into the
            # same memory the graph's optimizer step reads.
            for p in model.parameters():
                p.grad.zero_()
            model_loss(model, train.images[rest], reduction="sum", validate=False).loss.backward()
            opt.step()
        torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


# --- running ---------------------------------------------------------------------------------

def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Peak resident set size of this process so far (Linux reports KiB).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(name, fn, model, test, epochs, batch, lr, device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
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
    ]
    if report.get("course"):
        total = sum(r["seconds"] for r in report["course"])
        lines += ["", "| notebook under nbval (no checkpoints cached) | seconds |", "|---|---|"]
        lines += [f"| {r['notebook']}{'' if r['passed'] else ' (FAILED)'} | {r['seconds']:.1f} |" for r in report["course"]]
        lines += [f"| **all notebooks** | **{total:.1f}** |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="epochs per variant; the first is the warm-up (default 10)")
    p.add_argument("--dataset", default=None, help="mnist or fashion-mnist (default: $VAE_DATASET or mnist)")
    p.add_argument("--variants", nargs="*", default=None, help="a subset of: textbook course large-batch cuda-graph")
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
        "large-batch": (1024, 3e-3, lambda m, e, b, lr: course_epochs(m, train, e, b, lr, device)),
    }
    if device.type == "cuda":
        variants["cuda-graph"] = (128, 1e-3, lambda m, e, b, lr: cuda_graph_epochs(m, train, e, b, lr, device))
    chosen = args.variants or list(variants)
    unknown = set(chosen) - set(variants)
    if unknown:
        p.error(f"unknown or unsupported variants on {device.type}: {sorted(unknown)}; choose from {list(variants)}")
    if "textbook" not in chosen:
        chosen = ["textbook"] + chosen  # every ratio is to the textbook pipeline

    flops = epoch_flops(len(train))
    throughput = matmul_throughput(device)
    floor_seconds = flops / throughput
    print(f"floor: {flops / 1e9:.1f} GFLOP per epoch at {throughput / 1e9:.1f} GFLOP/s = {floor_seconds:.3f} s", flush=True)

    rows = []
    for name in chosen:
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
    if args.course:
        print("the course under nbval:", flush=True)
        report["course"] = course_under_nbval(dataset)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = device.type
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print()
    print(markdown(report))
    print(f"written to {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
