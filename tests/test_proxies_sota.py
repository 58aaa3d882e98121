"""MeCo, SWAP / reg_swap and AZ-NAS: finite on real NB201 nets, side-effect free, deterministic,
and the values of hand-made cases whose answer is known; az_nas is set-level only."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from eznas import cli
from eznas.batches import make_batches
from eznas.errors import EznasError
from eznas.proxies import components_of, compute, get_proxy, is_set_level, proxy_names, score_set
from eznas.proxies.aznas import az_components, feature_entropy, pair_trainability
from eznas.proxies.swap import count_unique_patterns, pack_patterns, regular_factor
from eznas.spaces import build

NEW = ("meco", "swap", "reg_swap", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
ARCHS = ("(0, 2, 3, 2, 3, 1)", "(2, 2, 2, 2, 2, 2)", "(0, 0, 0, 0, 0, 0)", "(4, 3, 1, 0, 2, 4)")


def small(arch: str, seed: int = 0) -> nn.Module:
    return build("nb201", arch, "cifar10", seed=seed, width=8, depth=1)


@pytest.fixture(scope="module")
def batch(data_dir):
    b = make_batches("cifar10", 16, 0, num_classes=10, root=data_dir)
    return b.D, b.targets


def test_registered_and_az_nas_is_set_level_only():
    assert set(NEW) <= set(proxy_names()) and "az_nas" not in proxy_names()
    assert is_set_level("az_nas") and not is_set_level("swap")
    assert components_of("az_nas") == ("expressivity", "progressivity", "trainability", "complexity")
    for call in (lambda: get_proxy("az_nas"), lambda: compute("az_nas", nn.ReLU(), torch.zeros(1), torch.zeros(1))):
        with pytest.raises(EznasError, match="set-level") as e:
            call()
        assert "\n" not in str(e.value)


def test_az_nas_on_a_single_net_raises(batch):
    x, y = batch
    with pytest.raises(EznasError, match="at least 2 nets, got 1"):
        score_set("az_nas", [small(ARCHS[0])], x, y)
    with pytest.raises(EznasError, match="at least 2 nets"):
        score_set("az_nas", [{"expressivity": 1.0, "progressivity": 0.0, "trainability": 0.0, "complexity": 1.0}])
    with pytest.raises(EznasError, match="lacks"):
        score_set("az_nas", [{"expressivity": 1.0}, {"expressivity": 2.0}])


@pytest.mark.parametrize("name", NEW)
def test_finite_untouched_deterministic_on_nb201(name, batch):
    x, y = batch
    model = small(ARCHS[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = compute(name, model, x, y)
    assert torch.equal(rng, torch.get_rng_state()), "the global RNG moved"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights or BN buffers changed"
    assert all(p.grad is None for p in model.parameters()) and model.training
    assert math.isfinite(first)
    assert compute(name, small(ARCHS[0]), x, y) == pytest.approx(first, rel=1e-9, abs=1e-12)
    # and it tells nets apart
    others = {compute(name, small(a), x, y) for a in ARCHS[1:]}
    assert len(others | {first}) > 1


def test_meco_known_correlation():
    # two channels with Pearson r = 0.6 exactly: eigenvalues 1 +- 0.6, lambda_min = 0.4
    a = torch.tensor([1.0, -1.0, 1.0, -1.0])
    z = torch.tensor([1.0, 1.0, -1.0, -1.0])
    x = torch.stack([a, 0.6 * a + 0.8 * z]).reshape(1, 2, 2, 2)
    # only the first sample counts
    x = torch.cat([x, torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(0))])
    y = torch.zeros(4, dtype=torch.long)
    assert compute("meco", nn.Identity(), x, y) == pytest.approx(0.4, abs=1e-6)
    # every module call counts: the Sequential and its two members see the same map
    assert compute("meco", nn.Sequential(nn.Identity(), nn.Identity()), x, y) == pytest.approx(1.2, abs=1e-6)
    # identical channels: correlation all ones, lambda_min 0; a constant channel: NaN entries zeroed
    dup = torch.stack([a, a]).reshape(1, 2, 2, 2)
    assert compute("meco", nn.Identity(), dup, y[:1]) == pytest.approx(0.0, abs=1e-12)
    const = torch.stack([a, torch.ones(4)]).reshape(1, 2, 2, 2)
    assert compute("meco", nn.Identity(), const, y[:1]) == pytest.approx(0.0, abs=1e-12)


def test_swap_counts_distinct_patterns():
    # a parameter-free net: the ReLU sees the input, so the patterns are the input's signs
    signs = torch.tensor([[1, 1, -1, 1],    # sample 0 at positions 0..3
                          [1, -1, -1, 1],   # sample 1
                          [1, 1, -1, 1.]])  # sample 2 -> patterns 111, 101, 000, 111: 3 distinct
    x = signs.reshape(3, 1, 2, 2)
    y = torch.zeros(3, dtype=torch.long)
    assert compute("swap", nn.Sequential(nn.ReLU()), x, y) == 3.0
    # two ReLUs: the second one's neurons repeat the first one's patterns
    assert compute("swap", nn.Sequential(nn.ReLU(), nn.ReLU()), x, y) == 3.0
    # only the first `samples` images count: with 2 samples the patterns are 11, 10, 00
    assert get_proxy("swap")(nn.Sequential(nn.ReLU()), x, y, samples=2) == 3.0
    assert get_proxy("swap")(nn.Sequential(nn.ReLU()), x, y, samples=1) == 2.0
    assert math.isnan(compute("swap", nn.Identity(), x, y))


@pytest.mark.parametrize("samples", [5, 64, 70, 130])
def test_packed_pattern_count_matches_unique_rows(samples):
    g = torch.Generator().manual_seed(samples)
    base = torch.rand((samples, 40), generator=g) > 0.5
    active = base[:, torch.randint(0, 40, (500,), generator=g)]  # 500 neurons, at most 40 patterns
    expected = torch.unique(active.t().to(torch.int8), dim=0).shape[0]
    assert count_unique_patterns(pack_patterns(active)) == expected


def test_reg_swap_is_swap_times_the_bell():
    net = nn.Sequential(nn.ReLU())
    net.register_parameter("w", nn.Parameter(torch.zeros(500)))  # 0.5 thousand parameters
    x = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(4, dtype=torch.long)
    s = compute("swap", net, x, y)
    reg = get_proxy("reg_swap")
    assert reg(net, x, y, mu=0.5, sigma=1.0) == pytest.approx(s)
    assert reg(net, x, y, mu=1.5, sigma=2.0) == pytest.approx(s * math.exp(-0.5))
    assert regular_factor(net, mu=0.5, sigma=1.0) == 1.0


def test_az_expressivity_and_trainability_known_values():
    # three orthogonal zero-mean channels of equal norm: isotropic covariance, entropy log 3
    h = torch.tensor([[1.0, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    assert feature_entropy(h.reshape(1, 3, 2, 2)) == pytest.approx(math.log(3), abs=1e-6)
    # one dominant direction only: entropy 0
    assert feature_entropy(torch.stack([h[0], 2 * h[0], -h[0]]).reshape(1, 3, 2, 2)) == pytest.approx(0, abs=1e-6)
    # f_out = 2 f_in on one channel: g_in = 2 g_out, E[g_in g_out] = 2, score 2 - 2 - 1/2
    f_in = torch.randn(4, 1, 3, 3, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    assert pair_trainability(f_in, 2 * f_in, g) == pytest.approx(-0.5, abs=1e-5)
    assert pair_trainability(f_in, f_in * 1.0, g) == -math.inf  # the identity passes gradients unchanged


def test_az_nas_rank_assembly_by_hand():
    comps = [{"expressivity": 1.0, "progressivity": 3.0, "trainability": 1.0, "complexity": 10.0},
             {"expressivity": 2.0, "progressivity": 2.0, "trainability": 1.0, "complexity": 30.0},
             {"expressivity": 3.0, "progressivity": float("nan"), "trainability": 2.0, "complexity": 20.0}]
    # ranks (1 = lowest, ties averaged, NaN lowest): E 1,2,3  P 3,2,1  T 1.5,1.5,3  C 1,3,2
    ranks = np.array([[1, 3, 1.5, 1], [2, 2, 1.5, 3], [3, 1, 3, 2]])
    expected = np.log(ranks / 3).sum(1)
    assert score_set("az_nas", comps) == pytest.approx(expected.tolist())


def test_az_nas_scores_models_like_their_components(batch):
    x, y = batch
    models = [small(a) for a in ARCHS]
    comps = [az_components(m, x, y) for m in models]
    assert all(math.isfinite(v) for c in comps for v in c.values())
    assert score_set("az_nas", models, x, y) == pytest.approx(score_set("az_nas", comps))
    assert components_of("az_nas") == tuple(comps[0])


def test_score_cli_prints_a_finite_swap(data_dir, capsys):
    assert cli.main(["score", "--proxy", "swap", "--space", "nb201", "--arch", "(0, 2, 3, 2, 3, 1)",
                     "--batch-size", "16", "--data-dir", str(data_dir)]) == 0
    assert math.isfinite(float(capsys.readouterr().out.strip()))
    assert cli.main(["score", "--proxy", "az_nas", "--space", "nb201", "--arch", "(0, 2, 3, 2, 3, 1)",
                     "--batch-size", "16", "--data-dir", str(data_dir)]) == 2
    assert "set-level" in capsys.readouterr().err


def test_az_components_see_every_nb101_block(batch):
    """NB101 has no ``stem`` / ``cells``: the features are its blocks -- stem, 9 cells, 2 max-pools
    -- so progressivity and trainability are finite and differ between nets (they were NaN when
    only the model's direct children were hooked)."""
    from eznas.proxies.aznas import stage_features

    x, y = batch
    keys = (("(0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, "
            "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 3, 3, 4, 1)",
            "(0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, "
            "0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 2, 4, 3, 3, 1)"))
    nets = [build("nb101", k, "cifar10", seed=0, width=8) for k in keys]
    assert len(stage_features(nets[0], torch.randn(2, 3, 32, 32))) == 12
    comps = [az_components(n, x, y) for n in nets]
    for c in comps:
        assert all(math.isfinite(v) for v in c.values()), c
    assert comps[0]["trainability"] != comps[1]["trainability"]
    assert comps[0]["progressivity"] != comps[1]["progressivity"]
