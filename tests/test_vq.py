"""Notebook 14's discrete codes: the VQ-VAE's quantizer and its gradients, the remedies, FSQ, the priors over
the code grid, the bound in bits per dimension, codebook health, and training through fit and train_or_load."""
import math

import pytest
import torch
from matplotlib import pyplot as plt

from splits import make_split
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.codebooks import (MODELS, PriorConfig, bounds_table, code_bound, code_prior_path, codebook_health,
                               decode_gaussian_noise, draw_code_edit, perplexity, table_configs,
                               train_or_load_code_prior)
from vae_lib.data import Split
from vae_lib.evaluation import eight_bit_bounds
from vae_lib.models import (VQVAE, CodePriorFit, FiniteScalarQuantizer, PixelCNNPrior, SpatialVAE, UniformCodes,
                            VectorQuantizer)
from vae_lib.models.code_prior import MaskedConv2d
from vae_lib.models.vq import COMMITMENT, RESTART_AFTER, kmeans, parse_remedies, round_ste, squared_distances
from vae_lib.registry import build_model
from vae_lib.training import evaluate


def eight_bit_split(n=256, seed=0) -> Split:
    s = make_split(n, True, seed)
    return Split(torch.round(s.images * 255) / 255, s.labels, s.classes, s.dataset, True)


def _small_vq(codebook="", codes=16, seed=0):
    torch.manual_seed(seed)
    return VQVAE(codes, 4, 4, codebook=codebook)


def test_remedies_are_parsed_and_bad_ones_say_which_exist():
    assert parse_remedies("") == ()
    assert parse_remedies("restart+ema") == ("ema", "restart")
    for bad in ("emma", "ema+ema", 3):
        with pytest.raises(ValueError, match="ema"):
            parse_remedies(bad)


def test_squared_distances_and_the_nearest_code_match_cdist():
    g = torch.Generator().manual_seed(0)
    v, e = torch.randn(50, 3, generator=g), torch.randn(7, 3, generator=g)
    assert torch.allclose(squared_distances(v, e), torch.cdist(v, e) ** 2, atol=1e-5)
    q = VectorQuantizer(7, 3)
    with torch.no_grad():
        q.weight.copy_(e)
    assert torch.equal(q.nearest(v), torch.cdist(v, e).argmin(1))


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres.repeat_interleave(100, 0) + 0.1 * torch.randn(300, 2, generator=g)
    found, counts = kmeans(points, 3, generator=torch.Generator().manual_seed(1))
    assert sorted(counts.tolist()) == [100, 100, 100]
    assert torch.cdist(found, centres).min(1).values.max() < 0.1
    with pytest.raises(ValueError, match="at least 5 vectors"):
        kmeans(points[:4], 5)


def _gradients(quantizer):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        quantizer.weight.copy_(torch.randn(5, 3, generator=g))
    z_e = torch.randn(8, 3, generator=g, requires_grad=True)
    w = torch.randn(8, 3, generator=g)
    z_st, chosen, codebook_term, commitment_term = quantizer(z_e)
    ((w * z_st).sum() + codebook_term.sum() + COMMITMENT * commitment_term.sum()).backward()
    e = quantizer.weight.detach()[chosen]
    encoder = w + 2 * COMMITMENT * (z_e.detach() - e)
    codebook = torch.zeros(5, 3).index_add_(0, chosen, 2 * (e - z_e.detach()))
    codebook_grad = quantizer.weight.grad if quantizer.weight.grad is not None else torch.zeros_like(quantizer.weight)
    return z_st, e, z_e.grad, encoder, codebook_grad, codebook


def test_the_straight_through_estimator_and_the_codebook_gradient():
    z_st, e, encoder_grad, encoder_expected, codebook_grad, codebook_expected = _gradients(VectorQuantizer(5, 3))
    assert torch.allclose(z_st.detach(), e, atol=1e-6)
    assert torch.allclose(encoder_grad, encoder_expected, atol=1e-6)
    assert codebook_expected.abs().max() > 0.1
    assert torch.allclose(codebook_grad, codebook_expected, atol=1e-6)


def test_the_classic_slip_gives_the_codebook_no_gradient():
    """Planting the straight-through output into the codebook term: the check above would fail."""
    class Slip(VectorQuantizer):
        def forward(self, z_e):
            z_st, indices, _, commitment = super().forward(z_e)
            return z_st, indices, (z_e.detach() - z_st).pow(2).sum(1), commitment

    *_, slip_grad, slip_expected = _gradients(Slip(5, 3))
    *_, library_grad, library_expected = _gradients(VectorQuantizer(5, 3))
    assert slip_grad.abs().max() == 0, "with the slip the codebook gets no gradient"
    assert torch.equal(slip_expected, library_expected) and library_expected.abs().max() > 0.1
    assert not torch.allclose(slip_grad, slip_expected, atol=1e-6), "the check of the library's gradient would catch it"
    assert torch.allclose(library_grad, library_expected, atol=1e-6)


def test_ema_moves_the_codebook_without_a_gradient_to_the_average_of_its_vectors():
    q = VectorQuantizer(4, 2, "ema")
    assert not q.weight.requires_grad
    vectors = torch.tensor([[1.0, 0.0], [1.2, 0.0], [-3.0, 1.0]])
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[1.0, 0.1], [-3.0, 0.9], [50.0, 50.0], [60.0, 60.0]]))
        q.ema_sum.copy_(q.weight)
    q.train()
    _, chosen, codebook_term, _ = q(vectors)
    assert chosen.tolist() == [0, 0, 1] and codebook_term.abs().sum() == 0, "with EMA the codebook term is zero"
    count = 0.99 * 1 + 0.01 * torch.tensor([2.0, 1.0, 0.0, 0.0])
    total = 0.99 * torch.tensor([[1.0, 0.1], [-3.0, 0.9], [50.0, 50.0], [60.0, 60.0]])
    total[0] += 0.01 * (vectors[0] + vectors[1])
    total[1] += 0.01 * vectors[2]
    n = count.sum()
    expected = total / ((count + 1e-5) / (n + 4 * 1e-5) * n)[:, None]
    assert torch.allclose(q.weight, expected, atol=1e-5)
    q.eval()
    before = q.weight.clone()
    q(vectors)
    assert torch.equal(q.weight, before), "an evaluation must not move the codebook"


def test_kmeans_initialisation_and_dead_code_restart():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(64, 2, generator=g) + 5
    q = VectorQuantizer(8, 2, "kmeans").train()
    assert not bool(q.initialised)
    torch.manual_seed(0)
    q(vectors)
    assert bool(q.initialised)
    assert q.weight.min() > 1, "the codebook should start among the vectors, not at the origin"
    r = VectorQuantizer(8, 2, "restart").train()
    with torch.no_grad():
        r.weight[1:] = 100.0                         # seven codes far from every vector: dead
    for _ in range(math.ceil(RESTART_AFTER * 8 / len(vectors)) - 1):   # one call short of RESTART_AFTER K vectors
        r(vectors)
    assert (r.weight[1:] == 100).all()
    r(vectors)
    assert (r.weight[1:] != 100).all() and ((r.weight[1:, None] - vectors).abs().sum(-1) < 1e-6).any(1).all(), \
        "each dead code should have moved onto a vector of the batch"


def test_fsq_reaches_every_code_and_its_lookup_inverts_it():
    fsq = FiniteScalarQuantizer((8, 5, 3))
    grid = torch.linspace(-5, 5, 61)
    q, indices, codebook_term, commitment_term = fsq(torch.cartesian_prod(grid, grid, grid))
    assert len(indices.unique()) == 120 and indices.max() == 119
    assert torch.allclose(fsq.lookup(indices), q)
    assert codebook_term.abs().sum() == 0 and commitment_term.abs().sum() == 0
    z = torch.randn(10, 3, requires_grad=True)
    round_ste(z).sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    two = FiniteScalarQuantizer((2, 3))
    q2, i2, _, _ = two(torch.cartesian_prod(grid, grid))
    assert torch.isfinite(q2).all() and sorted(i2.unique().tolist()) == list(range(6))
    assert torch.allclose(two.lookup(i2), q2)
    for bad in ((8, 1), (True, 3), ()):
        with pytest.raises(ValueError, match="levels"):
            FiniteScalarQuantizer(bad)
    with pytest.raises(ValueError, match="vectors of shape"):
        fsq(torch.zeros(4, 2))


def test_the_model_serves_fit_evaluate_and_train_or_load(tmp_path):
    train = eight_bit_split(256)
    for kind, dim, codebook in (("vq", 4, "ema+kmeans+restart"), ("vq", 4, ""), ("fsq", 3, "")):
        config = TrainConfig(dataset="mnist", model=kind, latent_dim=dim, channels=4, epochs=2, batch_size=64,
                             likelihood="discretized-logistic", codebook_size=240 if kind == "fsq" else 16,
                             codebook=codebook)
        model, history = train_or_load(config, train, train, folder=tmp_path, progress=False, log=None)
        assert history.test_kl[-1] == pytest.approx(49 * math.log(model.codes))
        assert history.test_loss[1] < history.test_loss[0] or kind == "fsq"
        again, _ = train_or_load(config, train, train, folder=tmp_path, progress=False, log=None)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
        assert evaluate(again, train)["loss"] == pytest.approx(history.test_loss[-1], rel=1e-5)
    assert "k16-ema+kmeans+restart" in TrainConfig(model="vq", codebook_size=16, codebook="ema+kmeans+restart").filename()


def test_bad_configurations_say_what_to_do():
    with pytest.raises(ValueError, match="codebook_size"):
        build_model("vq", 4)
    with pytest.raises(ValueError, match="not 'vae'"):
        build_model("vae", 2, codebook_size=8)
    with pytest.raises(ValueError, match="code_dim 3"):
        build_model("fsq", 4, codebook_size=512)
    with pytest.raises(ValueError, match="no codebook"):
        VQVAE(512, 3, quantizer="fsq", codebook="ema")
    model = _small_vq()
    for bad in (torch.zeros(2, 48, dtype=torch.long), torch.full((2, 49), 16), torch.zeros(2, 49)):
        with pytest.raises(ValueError, match="codes must"):
            model.decode_codes(bad)


def test_the_spatial_vae_is_an_ordinary_vae_of_the_course():
    model = SpatialVAE(2, 4)
    x = torch.round(torch.rand(5, 784) * 255) / 255
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 98)
    assert model.decode_logits(mu).shape == (5, 2 * 784)
    b = eight_bit_bounds(model, x, 4, torch.Generator().manual_seed(0))
    assert (b["iwae"] <= b["elbo"] + 1e-6).all()


def test_the_uniform_prior_and_the_pixelcnn_are_distributions_over_grids():
    u = UniformCodes(16)
    codes = u.sample(3, torch.Generator().manual_seed(0))
    assert codes.shape == (3, 49) and torch.allclose(u.log_prob(codes), torch.full((3,), -49 * math.log(16), dtype=torch.float64))
    prior = PixelCNNPrior(16, 8, 2)
    logp = torch.log_softmax(prior.logits(codes), 1)
    assert torch.allclose(logp.exp().sum(1), torch.ones(3, 7, 7), atol=1e-5)
    picked = logp.gather(1, codes.view(3, 1, 7, 7)).flatten(1).sum(1)
    assert torch.allclose(prior.log_prob(codes), picked, atol=1e-4)
    drawn = prior.sample(4, torch.Generator().manual_seed(1))
    assert drawn.shape == (4, 49) and drawn.max() < 16
    assert torch.equal(drawn, prior.sample(4, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="codes must lie"):
        u.log_prob(torch.full((1, 49), 16))


def test_the_pixelcnn_sees_only_the_codes_before_each_position():
    torch.manual_seed(0)
    prior = PixelCNNPrior(16, 8, 3)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    codes = torch.randint(16, (1, 49))
    base = prior.logits(codes)
    for j in (0, 10, 24, 48):
        changed = codes.clone()
        changed[0, j] = (changed[0, j] + 1) % 16
        diff = (prior.logits(changed) - base).abs().amax(1).flatten()
        assert diff[:j + 1].max() < 1e-6, f"position {j}: a position at or before it saw the change"
        if j < 48:
            assert diff[j + 1:].max() > 1e-4, f"position {j}: no later position saw the change"
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d("C", 2, 2, 3)


def test_fit_trains_the_prior_and_train_or_load_caches_it(tmp_path):
    train = eight_bit_split(256)
    config = TrainConfig(dataset="mnist", model="vq", latent_dim=4, channels=4, epochs=1, batch_size=64,
                         likelihood="discretized-logistic", codebook_size=16, codebook="kmeans")
    model, _ = train_or_load(config, train, folder=tmp_path, progress=False, log=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prior_config = PriorConfig(channels=8, layers=2, epochs=3, batch_size=64)
    lines = []
    prior, history = train_or_load_code_prior(config, model, prior_config, train, train, folder=tmp_path,
                                              progress=False, log=lines.append)
    assert history.test_loss[-1] < history.test_loss[0] < 49 * math.log(16) + 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the autoencoder must stay frozen"
    assert "Trained" in lines[-1]
    again, _ = train_or_load_code_prior(config, model, prior_config, train, train, folder=tmp_path, progress=False,
                                        log=lines.append)
    assert "Loaded" in lines[-1]
    assert torch.equal(again.head.weight, prior.head.weight)
    code_prior_path(config, prior_config, tmp_path).write_bytes(b"not a checkpoint")
    train_or_load_code_prior(config, model, prior_config, train, train, folder=tmp_path, progress=False, log=lines.append)
    assert "Cannot use" in lines[-2] and "Trained" in lines[-1]
    with pytest.raises(ValueError, match="autoencoder has 16"):
        CodePriorFit(model, PixelCNNPrior(8, 4, 1))
    with pytest.raises(ValueError, match="trained on"):
        train_or_load_code_prior(TrainConfig(dataset="fashion-mnist"), model, prior_config, train, folder=tmp_path)


def test_the_bound_keeps_the_code_term_under_any_prior():
    x = eight_bit_split(40).images
    model = _small_vq().eval()
    uniform = code_bound(model, UniformCodes(16), x, batch_size=16)
    assert uniform["total"] == pytest.approx(uniform["recon"] + 49 * math.log(16))
    assert uniform["bits_per_dim"] == pytest.approx(uniform["total"] / (784 * math.log(2)))
    prior = PixelCNNPrior(16, 8, 1)
    learned = code_bound(model, prior, x)
    codes = model.codes_of(x)
    assert learned["codes"] == pytest.approx(-prior.log_prob(codes).double().mean().item(), rel=1e-5)
    assert learned["recon"] == pytest.approx(uniform["recon"])
    table = bounds_table({"vq": model, "continuous": SpatialVAE(2, 4)}, {"vq, uniform": ("vq", UniformCodes(16))}, x, 5)
    assert list(table) == ["vq, uniform", "continuous, -ELBO", "continuous, -IWAE_5"]
    assert table["vq, uniform"]["total"] == pytest.approx(uniform["total"])
    assert table["continuous, -IWAE_5"]["total"] <= table["continuous, -ELBO"]["total"]
    bernoulli = VQVAE(16, 4, 4, likelihood="bernoulli")
    with pytest.raises(ValueError, match="256 levels"):
        code_bound(bernoulli, UniformCodes(16), x)


def test_codebook_health_counts_over_the_epoch():
    x = eight_bit_split(300).images
    model = _small_vq()
    h = codebook_health(model, x, batch_size=64)
    codes = model.codes_of(x)
    assert int(h["counts"].sum()) == 300 * 49
    assert h["used"] == len(codes.unique()) and h["dead"] == 16 - h["used"]
    assert h["entropy"] >= h["batch_entropy"] - 1e-12
    assert h["perplexity"] == pytest.approx(math.exp(h["entropy"]))
    assert perplexity(torch.ones(8)) == pytest.approx(8) and perplexity(torch.tensor([0.0, 5.0])) == pytest.approx(1)
    for bad in (torch.zeros(3), torch.tensor([[1.0]]), torch.tensor([-1.0, 2.0])):
        with pytest.raises(ValueError, match="counts"):
            perplexity(bad)
    with pytest.raises(ValueError, match="VQVAE"):
        codebook_health(SpatialVAE(2, 4), x)


def test_the_notebooks_configurations_and_pictures():
    configs = table_configs("fashion-mnist", 1)
    assert list(configs) == list(MODELS)
    assert {c.codebook for c in configs.values()} == {"", "ema", "kmeans", "restart", "ema+kmeans+restart"}
    assert len({c.filename() for c in configs.values()}) == len(configs)
    with pytest.raises(ValueError, match="no model named"):
        table_configs("fashion-mnist", 1, names=("VQGAN",))
    model = _small_vq().eval()
    assert decode_gaussian_noise(model, 3, torch.Generator().manual_seed(0)).shape == (3, 784)
    codes = model.codes_of(torch.zeros(1, 784))[0]
    fig = draw_code_edit(model, codes, 24, 3, torch.zeros(784))
    assert len(fig.axes) == 4
    plt.close(fig)
    for position, code in ((49, 0), (0, 16), (1.0, 0)):
        with pytest.raises(ValueError):
            draw_code_edit(model, codes, position, code)


def test_the_benchmarks_table_reports_each_model_and_the_two_gaps():
    from benchmarks.codebooks import markdown

    rows = []
    for seed in (0, 1):
        for name in MODELS:
            row = {"model": name, "seed": seed, "train_seconds": 1.0}
            if name != "continuous":
                row.update(used=100 + seed, dead=412 - seed, perplexity=50.0, batch_perplexity=40.0, batch_used=90.0)
            rows.append(row)
        rows.append({"model": "bounds", "seed": seed, "prior_seconds": 1.0,
                     "bits_per_dim": {"all three, uniform prior": 4.0 + seed, "all three, PixelCNN prior": 3.5,
                                      "continuous, -ELBO": 3.4, "continuous, -IWAE_100": 3.3}})
    text = markdown({"device": "cpu", "dataset": "mnist", "epochs": 1, "prior_epochs": 1, "n_eval": 10, "torch": "x",
                     "python": "y", "date": "z", "rows": rows})
    assert "| plain | 100.5 ± 0.5 |" in text and "plain 100, 101" in text
    assert "| all three, PixelCNN prior | 3.500 ± 0.000 |" in text
    assert "1.000 ± 0.500 bits/dim tighter" in text and "0.200 ± 0.000 bits/dim (by seed: +0.200, +0.200)" in text
    assert "continuous |" not in text


def test_remedies_combine_and_bad_inputs_say_what_to_do():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(64, 2, generator=g)
    q = VectorQuantizer(8, 2, "ema+kmeans").train()
    torch.manual_seed(0)
    q(vectors)
    counts = torch.bincount(q.nearest(vectors), minlength=8).float()
    assert (q.ema_count >= 0.99).all() and q.ema_count.sum() > 60, "the EMA counts start from the k-means clusters"
    assert torch.allclose(q.ema_sum / q.ema_count[:, None], q.weight, atol=1e-4)
    assert counts.sum() == 64
    with pytest.raises(ValueError, match="vectors of shape"):
        q(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least 8 vectors in the first training batch"):
        VectorQuantizer(8, 2, "kmeans").train()(vectors[:5])
    model = _small_vq().eval()
    assert model.sample_uniform(3, torch.Generator().manual_seed(0)).shape == (3, 784)
    x = eight_bit_split(4).images
    assert model.reconstruct(x).shape == (4, 784)
    with pytest.raises(ValueError, match="prior is over 8 codes but the model has 16"):
        code_bound(model, UniformCodes(8), x)
    with pytest.raises(ValueError, match="temperature"):
        PixelCNNPrior(16, 4, 1).sample(2, temperature=0)
    with pytest.raises(ValueError, match="positive integer"):
        decode_gaussian_noise(model, 0)
    codes = model.codes_of(x[:1])[0]
    with pytest.raises(ValueError, match="codes of one image"):
        draw_code_edit(model, codes[:10], 0, 0)
    with pytest.raises(ValueError, match="position"):
        draw_code_edit(model, codes, True, 0)
