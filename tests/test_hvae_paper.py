"""The paper's two-level HVAE (vae_lib.models.hvae_paper): its shapes against the reference code, its ELBO
pieces against an independent computation, the importance weights through the course's estimators,
training through fit, and the reproduction's arguments for it (benchmarks/reproduce.py --model hvae)."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from benchmarks import reproduce
from splits import make_split
from vae_lib.checkpoints import code_fingerprint
from vae_lib.evaluation import importance_log_weights, iwae_bound, iwae_from_log_weights
from vae_lib.models import TwoLevelGatedVAE
from vae_lib.registry import build_model
from vae_lib.training import evaluate, fit

#: Every nn.Linear that ``models/HVAE_2level.py`` of jmtomczak/vae_vampprior (commit bb6ff3e) creates for
#: binary data, with its weight's shape (out, in), written out from reading that file: input_size 784,
#: z1_size = z2_size = 40 (the defaults of its experiment.py), 300 units everywhere. A GatedDense holds
#: two linears, ``h`` and ``g``; a NonLinear holds one, ``linear``.
REFERENCE_WEIGHTS = {
    # q(z2 | x)
    "q_z2_layers.0.h": (300, 784), "q_z2_layers.0.g": (300, 784),
    "q_z2_layers.1.h": (300, 300), "q_z2_layers.1.g": (300, 300),
    "q_z2_mean": (40, 300), "q_z2_logvar.linear": (40, 300),
    # q(z1 | x, z2)
    "q_z1_layers_x.0.h": (300, 784), "q_z1_layers_x.0.g": (300, 784),
    "q_z1_layers_z2.0.h": (300, 40), "q_z1_layers_z2.0.g": (300, 40),
    "q_z1_layers_joint.0.h": (300, 600), "q_z1_layers_joint.0.g": (300, 600),
    "q_z1_mean": (40, 300), "q_z1_logvar.linear": (40, 300),
    # p(z1 | z2)
    "p_z1_layers.0.h": (300, 40), "p_z1_layers.0.g": (300, 40),
    "p_z1_layers.1.h": (300, 300), "p_z1_layers.1.g": (300, 300),
    "p_z1_mean": (40, 300), "p_z1_logvar.linear": (40, 300),
    # p(x | z1, z2)
    "p_x_layers_z1.0.h": (300, 40), "p_x_layers_z1.0.g": (300, 40),
    "p_x_layers_z2.0.h": (300, 40), "p_x_layers_z2.0.g": (300, 40),
    "p_x_layers_joint.0.h": (300, 600), "p_x_layers_joint.0.g": (300, 600),
    "p_x_mean.linear": (784, 300),
}


def _model(seed=0, dims=(40, 40), hidden=300):
    torch.manual_seed(seed)
    return TwoLevelGatedVAE(dims, hidden)


def _binary(n=4, seed=1):
    return torch.bernoulli(torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)),
                           generator=torch.Generator().manual_seed(seed + 1))


def test_the_parameters_are_the_reference_codes():
    model = _model()
    state = model.state_dict()
    weights = {k.removesuffix(".weight"): tuple(v.shape) for k, v in state.items() if k.endswith(".weight")}
    assert weights == REFERENCE_WEIGHTS, "the same linear layers, by the reference code's names and shapes"
    biases = {k.removesuffix(".bias"): tuple(v.shape) for k, v in state.items() if k.endswith(".bias")}
    assert biases == {k: (shape[0],) for k, shape in REFERENCE_WEIGHTS.items()}
    assert sum(p.numel() for p in model.parameters()) == sum(o * i + o for o, i in REFERENCE_WEIGHTS.values()) == 2_431_024
    assert model.latent_dim == 80 and model.latent_dims == (40, 40)


def test_he_initialisation_and_the_clipped_log_variances():
    model = _model()
    for name, fan_in in (("q_z2_layers.0.h", 784), ("q_z1_layers_joint.0.g", 600), ("p_x_mean.linear", 300)):
        std = model.get_submodule(name).weight.std().item()
        assert abs(std - math.sqrt(2 / fan_in)) < 0.1 * math.sqrt(2 / fan_in), (name, std)
    x = _binary()
    with torch.no_grad():
        for head in (model.q_z2_logvar, model.q_z1_logvar, model.p_z1_logvar):
            head.linear.bias.fill_(100.0)
        out = model.infer(x)
        assert all(lv.max() == 2.0 for lv in (out["q"][0][1], out["q"][1][1], out["p"][0][1]))
        for head in (model.q_z2_logvar, model.q_z1_logvar, model.p_z1_logvar):
            head.linear.bias.fill_(-100.0)
        out = model.infer(x)
        assert all(lv.min() == -6.0 for lv in (out["q"][0][1], out["q"][1][1], out["p"][0][1]))


def test_the_loss_terms_are_the_reference_codes_loss():
    """rec and the KL's row sums against their calculate_loss, written independently with
    torch.distributions on the same draws: KL = -(log p(z1|z2) + log p(z2) - log q(z1|x,z2) - log q(z2|x))."""
    model, x = _model(), _binary(6)
    with torch.no_grad():
        for p in model.parameters():   # a p(z1|z2) far from q, so that every term matters
            p.mul_(1.5)
        torch.manual_seed(7)
        rec, kl, extra = model.loss_terms(x)
        torch.manual_seed(7)           # the same draws, by hand: z2 ~ q(z2|x), z1 ~ q(z1|x, z2)
        mu2, lv2 = model.q_z2(x)
        z2 = mu2 + torch.exp(0.5 * lv2) * torch.randn_like(mu2)
        mu1, lv1 = model.q_z1(x, z2)
        z1 = mu1 + torch.exp(0.5 * lv1) * torch.randn_like(mu1)
        pm1, plv1 = model.p_z1(z2)
        logits = model.decode_logits(z1, z2)

    def log_n(z, mu, logvar):
        return Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)

    reference_kl = -(log_n(z1, pm1, plv1) + Normal(0.0, 1.0).log_prob(z2).sum(-1) - log_n(z1, mu1, lv1) - log_n(z2, mu2, lv2))
    assert extra is None and rec.shape == (6,) and kl.shape == (6, 80)
    torch.testing.assert_close(rec, -Bernoulli(logits=logits).log_prob(x).sum(-1))
    torch.testing.assert_close(kl.sum(-1), reference_kl, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl[:, 40:].sum(-1), log_n(z2, mu2, lv2) - Normal(0.0, 1.0).log_prob(z2).sum(-1),
                               rtol=1e-4, atol=1e-3)   # columns 40-79 are z2's
    assert kl.sum(-1).abs().min() > 1, "the KL is not trivially zero"


def test_the_importance_weights_are_the_elbo_terms_and_iwae_is_above_the_elbo():
    model, x = _model(), _binary(4)
    n = 3000
    with torch.no_grad():
        rec, kl, _ = model.loss_terms(x.repeat(n, 1))
    elbo_terms = -(rec + kl.sum(-1)).double().view(n, -1)
    log_w = importance_log_weights(model, x, n, generator=torch.Generator().manual_seed(0))
    assert log_w.shape == (n, 4) and log_w.dtype == torch.float64
    difference = elbo_terms.mean(0) - log_w.mean(0)
    se = ((elbo_terms.var(0) + log_w.var(0)) / n).sqrt()
    assert (difference.abs() < 4 * se).all(), (difference, se)
    elbo, iwae = log_w.mean(0), iwae_from_log_weights(log_w, n)[0]
    assert (iwae > elbo + 4 * log_w.std(0) / math.sqrt(n)).all(), "IWAE_3000 above the ELBO beyond its noise"


def test_the_course_estimators_use_the_models_own_draws():
    model, x = _model(dims=(6, 3), hidden=32), _binary(5)
    a = importance_log_weights(model, x, 20, generator=torch.Generator().manual_seed(3))
    b = model.log_weights(x, 20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    bound = iwae_bound(model, x, 20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(bound, iwae_from_log_weights(a, 20)[0])


def test_sampling_and_reconstruction():
    model = _model(dims=(6, 3), hidden=32)
    a = model.sample(7, generator=torch.Generator().manual_seed(2))
    b = model.sample(7, generator=torch.Generator().manual_seed(2))
    assert a.shape == (7, 784) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, model.sample(7, generator=torch.Generator().manual_seed(3)))
    x = _binary(3)
    r = model.reconstruct(x)
    assert r.shape == (3, 784) and torch.equal(r, model.reconstruct(x)), "posterior means: no draw"


def test_fit_and_evaluate_train_it_with_warm_up():
    torch.manual_seed(0)
    model = TwoLevelGatedVAE((6, 3), 32)
    split = make_split(256, True, 0)
    before = evaluate(model, split)["loss"]
    history = fit(model, split, epochs=4, batch_size=32, progress=False, warmup_epochs=2, binarize=True)
    assert history.beta[:2] == [0.5, 1.0] and evaluate(model, split)["loss"] < before - 10


def test_the_registry_and_the_checkpoints_know_it():
    model = build_model("hvae-paper", 40, 300)
    assert isinstance(model, TwoLevelGatedVAE) and model.latent_dims == (40, 40) and model.hidden_dim == 300
    assert build_model("hvae-paper", 8, 16, top_latent_dim=4).latent_dims == (8, 4)
    assert code_fingerprint("hvae-paper") not in (code_fingerprint("hvae-top-down"), code_fingerprint("gated"))
    with pytest.raises(ValueError, match="N\\(0, I\\)"):
        build_model("hvae-paper", prior="vamp", prior_components=10)


def test_bad_arguments_say_what_to_do():
    for dims in (40, (40,), (40, 40, 40), "ab"):
        with pytest.raises(ValueError, match="two layer sizes"):
            TwoLevelGatedVAE(dims)
    with pytest.raises(ValueError, match="z_1"):
        TwoLevelGatedVAE((0, 40))
    with pytest.raises(ValueError, match="hidden_dim"):
        TwoLevelGatedVAE((4, 4), 0)
    model = _model(dims=(6, 3), hidden=32)
    with pytest.raises(ValueError, match="784"):
        model.log_weights(torch.rand(2, 100), 3)
    with pytest.raises(ValueError, match="positive integer"):
        model.log_weights(torch.rand(2, 784), 0)
    with pytest.raises(ValueError, match="eps must be 2 tensors"):
        model.infer(torch.rand(2, 784), [torch.zeros(2, 3), torch.zeros(2, 6)])
    with pytest.raises(ValueError, match="z2"):
        model.decode_logits(torch.zeros(2, 6), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)


def test_the_reproductions_arguments_for_the_hvae(capsys):
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(["--model", "hvae", "--prior", "vamp"])
    assert exit_.value.code == 2 and "standard prior only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(["--model", "hvae2"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["--prior", "hvae"])           # the HVAE is a model, not a prior
    with pytest.raises(ValueError, match="model must be one of"):
        reproduce.Protocol(model="ladder")
    with pytest.raises(ValueError, match="standard prior only"):
        reproduce.Protocol(model="hvae", prior="vamp", components=10)


def test_the_hvae_protocol_is_the_papers_with_its_own_names():
    full = reproduce.FULL[2]
    assert full.model == "hvae" and full.full and not reproduce.SMOKE_HVAE.full
    assert full == reproduce.Protocol(model="hvae") and reproduce.paper_for(full)["nll"] == 227.37
    assert reproduce._stem(full) == "_hvae" and reproduce._stem(reproduce.FULL[0]) == ""
    assert isinstance(reproduce.build(full), TwoLevelGatedVAE)
    # The one-level protocols' saved states and reports keep their keys: no "model" while it is the default.
    assert "model" not in reproduce.protocol_dict(reproduce.FULL[0])
    assert "model" not in reproduce.protocol_dict(reproduce.FULL[1])
    assert reproduce.protocol_dict(full)["model"] == "hvae"
