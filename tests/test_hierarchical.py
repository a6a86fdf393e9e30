"""The hierarchical VAEs of notebook 13: shapes, the per-layer KLs against Monte Carlo, the importance
weights through the course's estimators, ancestral sampling, and training through fit and train_or_load."""
import functools
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from splits import make_split
from vae_lib.checkpoints import TrainConfig, train_or_load
from vae_lib.evaluation import importance_log_weights, iwae_bound, iwae_from_log_weights
from vae_lib.models import HierarchicalVAE
from vae_lib.models.hierarchical import gaussian_kl, log_normal, precision_weighted
from vae_lib.registry import build_model
from vae_lib.training import evaluate, fit, model_terms

MODES = ("bottom-up", "top-down")


def _model(mode, dims=(6, 3), seed=0, hidden=32):
    torch.manual_seed(seed)
    model = HierarchicalVAE(dims, hidden, mode)
    with torch.no_grad():   # a prior p(z_1|z_2) that is far from N(0, I), so that each term matters
        for p in model.parameters():
            p.mul_(3.0)
    return model


@functools.cache
def _trained(mode):
    """A small model trained on two clusters, with free bits so that both layers carry some KL."""
    torch.manual_seed(0)
    model = HierarchicalVAE((6, 3), 32, mode)
    fit(model, make_split(512, True, 0), epochs=5, batch_size=32, progress=False, free_bits=0.5)
    return model.eval()


def _images(n=8, seed=1):
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [(5,), (6, 3), (7, 4, 2)])
def test_shapes_of_every_pass(mode, dims):
    model, x = HierarchicalVAE(dims, 16, mode), _images(5)
    out = model.infer(x)
    assert [z.shape for z in out["z"]] == [(5, d) for d in dims]
    assert [q[0].shape for q in out["q"]] == [p[1].shape for p in out["p"]] == [(5, d) for d in dims]
    rec, kl, extra = model.loss_terms(x)
    assert rec.shape == (5,) and kl.shape == (5, sum(dims)) and extra is None
    assert [s.stop - s.start for s in model.layer_slices()] == list(dims) and model.latent_dim == sum(dims)
    assert model.log_weights(x, 3).shape == (3, 5)
    assert [m.shape for m in model.layer_means(x, 2)] == [(5, d) for d in dims]
    assert [k.shape for k in model.layer_kls(x, 2)] == [(d,) for d in dims]
    assert model.top_posterior(x)[0].shape == (5, dims[-1])
    assert model.sample(4).shape == model.reconstruct(x[:4]).shape == (4, 784)


def test_the_two_inferences_differ_in_what_the_encoder_reads():
    bottom_up, top_down = HierarchicalVAE((6, 3), 32, "bottom-up"), HierarchicalVAE((6, 3), 32, "top-down")
    assert bottom_up.up[1][0].in_features == 6       # z_2's q reads the draw of z_1
    assert top_down.up[1][0].in_features == 32       # z_2's q reads the deterministic path from x
    # top-down: q(z_1|x, z_2) moves with z_2 (it merges p(z_1|z_2)); bottom-up: q(z_1|x) does not
    x = _images(4)
    for model, moves in ((bottom_up, False), (top_down, True)):
        eps_a = [torch.zeros(4, 6), torch.zeros(4, 3)]
        eps_b = [torch.zeros(4, 6), torch.full((4, 3), 2.0)]
        with torch.no_grad():
            q_a, q_b = model.infer(x, eps_a)["q"][0], model.infer(x, eps_b)["q"][0]
        assert (not torch.equal(q_a[0], q_b[0])) == moves


def test_gaussian_kl_is_torchs():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp = (torch.randn(50, 4, generator=g) for _ in range(4))
    expected = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp()))
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_normal(mq, mp, lp), Normal(mp, (0.5 * lp).exp()).log_prob(mq), rtol=1e-5, atol=1e-5)


def test_precision_weighting_adds_precisions_and_stays_finite():
    g = torch.Generator().manual_seed(0)
    mu_hat, lv_hat, mu_p, lv_p = (torch.randn(100, 3, generator=g, dtype=torch.float64) for _ in range(4))
    mu, lv = precision_weighted(mu_hat, lv_hat, mu_p, lv_p)
    precision = (-lv_hat).exp() + (-lv_p).exp()
    torch.testing.assert_close((-lv).exp(), precision)
    torch.testing.assert_close(mu, (mu_hat * (-lv_hat).exp() + mu_p * (-lv_p).exp()) / precision)
    # the product of the two densities is proportional to the merged one: log N_hat + log N_p - log N_q is constant in z
    z = torch.randn(5, 100, 3, generator=g, dtype=torch.float64)
    rest = log_normal(z, mu_hat, lv_hat) + log_normal(z, mu_p, lv_p) - log_normal(z, mu, lv)
    torch.testing.assert_close(rest, rest[:1].expand_as(rest))
    big = torch.tensor([80.0, -80.0])
    assert torch.isfinite(torch.cat(precision_weighted(big, big, -big, -big))).all()


@pytest.mark.parametrize("mode", MODES)
def test_layer_by_layer_kls_agree_with_a_monte_carlo_estimate_of_the_joint(mode):
    """E_q[log q(z_1, z_2|x) - log p(z_1, z_2)], from its own draws, against the KLs layer by layer.
    A wrong sign or a missing term in any layer's KL (the top's included) fails this."""
    model, x = _model(mode), _images(4)
    n = 4000
    with torch.no_grad():
        xr = x.repeat(n, 1)
        layers = torch.cat(model.layer_kl(model.infer(xr)), -1).double()
        per_layer = [layers[:, s].sum(-1).view(n, -1) for s in model.layer_slices()]
        out = model.infer(xr)             # independent draws
        joint = sum((log_normal(z, *q) - log_normal(z, *p)).double().sum(-1)
                    for z, q, p in zip(out["z"], out["q"], out["p"])).view(n, -1)
    total = sum(per_layer)
    difference = total.mean(0) - joint.mean(0)
    se = ((total.var(0) + joint.var(0)) / n).sqrt()
    assert (difference.abs() < 4 * se).all(), (difference, se)
    assert all(k.mean() > 1 for k in per_layer)   # both layers carry KL (the next test shows a wrong top layer is caught)


@pytest.mark.parametrize("mode", MODES)
def test_the_importance_weights_are_the_elbo_terms(mode):
    """The mean log weight is -(reconstruction + KL) of loss_terms, and IWAE_k >= ELBO."""
    model, x = _model(mode), _images(4)
    n = 3000
    with torch.no_grad():
        rec, kl, _ = model.loss_terms(x.repeat(n, 1))
    elbo_terms = -(rec + kl.sum(-1)).double().view(n, -1)
    log_w = importance_log_weights(model, x, n, generator=torch.Generator().manual_seed(0))
    difference = elbo_terms.mean(0) - log_w.mean(0)
    se = ((elbo_terms.var(0) + log_w.var(0)) / n).sqrt()
    assert (difference.abs() < 4 * se).all(), (difference, se)
    iwae = iwae_from_log_weights(log_w, 100)
    gap = iwae.mean(0) - iwae_from_log_weights(log_w, 1).mean(0)
    assert (gap > 0).all()


def test_the_course_estimators_use_the_models_own_draws():
    model, x = _model("top-down"), _images(5)
    a = importance_log_weights(model, x, 20, generator=torch.Generator().manual_seed(3))
    b = model.log_weights(x, 20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    bound = iwae_bound(model, x, 20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(bound, iwae_from_log_weights(a, 20)[0])
    with pytest.raises(ValueError, match="without q"):
        importance_log_weights(model, x, 2, q=(torch.zeros(5, 9), torch.zeros(5, 9)))
    with pytest.raises(ValueError, match="not conditional"):
        importance_log_weights(model, x, 2, labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="pixels"):
        importance_log_weights(model, torch.rand(3, 100), 2)


def test_ancestral_sampling_keeps_a_given_top_and_is_reproducible():
    model = _model("top-down")
    top = torch.randn(6, 3)
    z = model.sample_layers(6, torch.Generator().manual_seed(0), top=top)
    torch.testing.assert_close(z[-1], top)
    again = model.sample_layers(6, torch.Generator().manual_seed(0), top=top)
    torch.testing.assert_close(z[0], again[0])
    means = model.sample_layers(6, top=top, draw=False)
    with torch.no_grad():
        torch.testing.assert_close(means[0], model.p[0](top)[0])
    with pytest.raises(ValueError, match="top must be"):
        model.sample_layers(6, top=torch.zeros(5, 3))


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="latent_dims"):
        HierarchicalVAE(8)
    with pytest.raises(ValueError, match="positive integer"):
        HierarchicalVAE((8, 0))
    with pytest.raises(ValueError, match="inference"):
        HierarchicalVAE((8, 4), inference="sideways")
    model = HierarchicalVAE((8, 4), 16)
    with pytest.raises(ValueError, match="eps"):
        model.infer(_images(2), [torch.zeros(2, 8)])
    with pytest.raises(ValueError, match="784"):
        model.loss_terms(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match="second layer"):
        build_model("vae", 2, 16, top_latent_dim=4)
    with pytest.raises(ValueError, match="N\\(0, I\\)"):
        build_model("hvae-top-down", 4, 16, prior="mog", prior_components=3, top_latent_dim=2)


@pytest.mark.parametrize("mode", MODES)
def test_fit_evaluate_and_train_or_load_serve_it(mode, tmp_path):
    train, test = make_split(256, True, 0), make_split(128, False, 1)
    model = build_model(f"hvae-{mode}", 4, 32, top_latent_dim=2)
    assert model.latent_dims == (4, 2) and model.inference == mode
    before = evaluate(model, test)["loss"]
    history = fit(model, train, test, epochs=3, batch_size=32, progress=False, warmup_epochs=2, free_bits=0.1)
    assert history.test_loss[-1] < before and history.beta == [0.5, 1.0, 1.0]
    rec, kl = model_terms(model, test.images)
    assert kl.shape == (128, 6)
    config = TrainConfig(dataset="mnist", model=f"hvae-{mode}", latent_dim=4, hidden_dim=32, epochs=1,
                         batch_size=64, top_latent_dim=2)
    assert "_z4-2_" in config.filename()
    trained, _ = train_or_load(config, train, test, folder=tmp_path, progress=False, log=None)
    loaded, _ = train_or_load(config, train, test, folder=tmp_path, progress=False, log=None)
    for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert TrainConfig().key() == TrainConfig(top_latent_dim=0).key()   # old checkpoints keep their names


def test_free_bits_hold_each_layers_units_up():
    """fit's free bits act per latent dimension, so in every layer: with lambda = 0.5 nats, a model
    trained on two clusters keeps at least some KL in the top layer."""
    train = make_split(256, True, 0)
    torch.manual_seed(0)
    model = build_model("hvae-bottom-up", 4, 32, top_latent_dim=2)
    fit(model, train, epochs=5, batch_size=32, progress=False, free_bits=0.5)
    kls = model.layer_kls(train.images, 4, torch.Generator().manual_seed(0))
    assert kls[1].sum() > 0.25 and math.isfinite(kls[0].sum())


def test_the_report_and_the_pictures_of_notebook_13():
    import matplotlib

    matplotlib.use("Agg")
    from vae_lib.hierarchy_report import VARY, draw_layers, layer_grid, measure_hierarchy

    model, x = _model("top-down"), _images(20)
    row = measure_hierarchy(model, x, n_eval=20, k=10, n_draws=2)
    assert len(row["kl_layers"]) == len(row["active_layers"]) == len(row["informative_layers"]) == 2
    assert row["latent_dims"] == [6, 3] and all(0 <= n <= d for n, d in zip(row["informative_layers"], [6, 3]))
    assert row["top_I_q"] >= 0 and abs(row["top_kl"] - row["kl_layers"][1]) < 0.5 * row["kl_layers"][1]
    fixed_top = layer_grid(model, VARY[0], rows=3, columns=4).view(3, 4, -1)
    varied_top = layer_grid(model, VARY[1], rows=3, columns=4).view(3, 4, -1)
    assert fixed_top.shape == varied_top.shape == (3, 4, 784)
    # each row's first image is the mean of p(z_1|z_2) for that row's z_2
    torch.testing.assert_close(fixed_top[:, 0], model.sample(3, top=torch.randn(
        3, 3, generator=torch.Generator().manual_seed(0)), draw=False))
    assert draw_layers({"td": model}, "td", VARY[1]) is not None
    with pytest.raises(ValueError, match="vary"):
        layer_grid(model, "z3")
    with pytest.raises(ValueError, match="two-level"):
        layer_grid(HierarchicalVAE((4,), 8), VARY[0])
    with pytest.raises(ValueError, match="HierarchicalVAE"):
        measure_hierarchy(build_model("vae", 2, 8), x)


def test_the_notebooks_configurations_and_the_benchmarks_table():
    from benchmarks.hierarchy import markdown
    from vae_lib.hierarchy_report import LAYERS, MODELS, table_configs

    configs = table_configs("fashion-mnist", 6, seed=1)
    assert list(configs) == list(MODELS)
    assert configs["one level"].latent_dim == sum(LAYERS) and configs["one level"].top_latent_dim == 0
    assert configs["top-down + warm-up"].warmup_epochs == 3 and configs["bottom-up + free bits"].free_bits > 0
    assert {c.model for c in configs.values()} == {"hvae-bottom-up", "hvae-top-down"}
    assert len({c.key() for c in configs.values()}) == len(MODELS)
    with pytest.raises(ValueError, match="no model named"):
        table_configs("fashion-mnist", 6, names=["three levels"])
    rows = []
    for seed in (0, 1):
        for i, name in enumerate(MODELS):
            two = name != "one level"
            rows.append({"model": name, "seed": seed, "negative_elbo": 250.0 - i - seed, "negative_iwae": 248.0 - i,
                         "kl_layers": [5.0, 3.0 + seed] if two else [15.0], "active_layers": [16, 4] if two else [23],
                         "informative_layers": [6, 3] if two else [20],
                         "top_I_q": 2.0, "top_marginal_kl": 1.0})
    report = {"device": "cpu (2 threads)", "dataset": "fashion-mnist", "epochs": 6, "n_eval": 1000, "torch": "2.14",
              "python": "3.12", "date": "2026-12-06", "rows": rows}
    table = markdown(report)
    assert table.count("\n| ") == 1 + len(MODELS)
    assert "| one level | 249.50 ± 0.50 | 248.00 ± 0.00 | 0.00 ± 0.00 | 15.00 ± 0.00 | – |" in table
    assert "| top-down | 247.50 ± 0.50 | 246.00 ± 0.00 | -2.00 ± 0.00 | 5.00 ± 0.00 | 3.50 ± 0.50 | 16.0" in table
    assert "| 4.0 ± 0.0 | 6.0 ± 0.0 | 3.0 ± 0.0 | 2.00 ± 0.00 |" in table


@pytest.mark.parametrize("mode", MODES)
def test_the_notebooks_kl_check_passes_and_catches_a_wrong_sign_or_a_missing_layer(mode):
    from vae_lib.hierarchy_report import check_layer_kls

    model, x = _trained(mode), make_split(6, False, 2).images
    good = check_layer_kls(model, x, draws=500)
    assert abs(good["difference"]) < 4 * good["se"] and len(good["layers"]) == 2
    assert good["total"] == pytest.approx(sum(good["layers"]))

    class WrongTop(HierarchicalVAE):
        def layer_kl(self, inference):
            kls = super().layer_kl(inference)
            return kls[:-1] + [-kls[-1]]

    class MissingBottom(HierarchicalVAE):
        def layer_kl(self, inference):
            kls = super().layer_kl(inference)
            return [torch.zeros_like(kls[0])] + kls[1:]

    for planted in (WrongTop, MissingBottom):
        wrong = planted((6, 3), 32, mode)
        wrong.load_state_dict(model.state_dict())
        bad = check_layer_kls(wrong, x, draws=500)
        assert abs(bad["difference"]) > 4 * bad["se"], planted.__name__
