"""The benchmark's own arithmetic: the FLOP count behind the floor, and the report's table."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.run import epoch_flops, markdown, matmul_throughput
from vae_lib.models import VAE
from vae_lib.training import model_loss


def test_epoch_flops_matches_torchs_flop_counter():
    model = VAE(latent_dim=2, hidden_dim=400)
    x = torch.rand(128, 784)
    with FlopCounterMode(display=False) as counter:
        model_loss(model, x, reduction="sum", validate=False).loss.backward()
    assert counter.get_total_flops() == epoch_flops(128)


def test_matmul_throughput_is_positive_and_finite():
    flops = matmul_throughput(torch.device("cpu"), repeats=5)
    assert 1e6 < flops < 1e15


def test_markdown_table_has_one_row_per_variant():
    row = {"variant": "course", "batch_size": 128, "lr": 1e-3, "seconds_per_epoch": 2.0,
           "images_per_second": 30000.0, "ratio_to_textbook": 0.25, "ratio_to_floor": 1.4,
           "peak_memory_mb": 900.0, "test_loss": 264.5}
    report = {"device": "cpu (2 threads)", "dataset": "fashion-mnist", "epochs": 10, "torch": "2.15",
              "torchvision": "0.29", "python": "3.11", "date": "2026-11-21",
              "floor": {"epoch_gflop": 189.0, "matmul_gflops": 100.0, "seconds": 1.89},
              "variants": [dict(row, variant="textbook", ratio_to_textbook=1.0), row],
              "course": [{"notebook": "01_elbo.ipynb", "seconds": 20.0, "passed": True}]}
    text = markdown(report)
    assert "| course | 128 | 0.001 | 2.000 | 30,000 | 0.250 | 1.40 | 900 | 264.50 |" in text
    assert "| **all notebooks** | **20.0** |" in text
