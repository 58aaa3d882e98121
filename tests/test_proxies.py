"""Baseline proxies: finite, deterministic, side-effect free, right sign; flops/params as published."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eznas import metrics
from eznas.batches import make_batches
from eznas.errors import EznasError
from eznas.proxies import compute, get_proxy, proxy_names
from eznas.spaces import build

ARCH = "(0, 2, 3, 2, 3, 1)"
ALL_CONV = "(2, 2, 2, 2, 2, 2)"
ALL_SKIP = "(0, 0, 0, 0, 0, 0)"
EXPECTED = {"params", "flops", "synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "nwot", "epe_nas",
            "l2_norm", "plain", "zen", "zico"}


def tiny(arch: str = ARCH, seed: int = 0) -> torch.nn.Module:
    return build("nb201", arch, "cifar10", seed=seed, width=4, depth=1)


@pytest.fixture(scope="module")
def batch(data_dir):
    b = make_batches("cifar10", 8, 0, num_classes=10, root=data_dir)
    return b.D, b.targets


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_registry_has_every_baseline():
    assert EXPECTED <= set(proxy_names())


def test_unknown_name_lists_valid_names():
    with pytest.raises(EznasError) as e:
        get_proxy("no_such_proxy")
    assert "no_such_proxy" in str(e.value) and "synflow" in str(e.value) and "zico" in str(e.value)


def test_every_proxy_finite_deterministic_and_side_effect_free(batch):
    x, y = batch
    model = tiny()
    before = _snapshot(model)
    first = {n: compute(n, model, x, y) for n in proxy_names()}
    again = {n: compute(n, tiny(), x, y) for n in reversed(proxy_names())}  # fresh net, reverse order
    for n in proxy_names():
        assert math.isfinite(first[n]), n
        assert first[n] == pytest.approx(again[n], rel=1e-6, abs=1e-9), n
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a proxy changed weights or BN buffers"
    assert all(p.grad is None for p in model.parameters()), "a proxy left gradients on the model"
    assert model.training


def test_size_proxies_grow_with_the_network(batch):
    x, y = batch
    big, small = tiny(ALL_CONV), tiny(ALL_SKIP)
    for n in ("params", "flops", "l2_norm", "synflow"):
        assert compute(n, big, x, y) > compute(n, small, x, y), n


def test_params_and_flops_match_published_nb201(data_dir):
    for dataset, size, fl, pa in (("cifar10", 32, 88.307392, 0.615386), ("ImageNet16-120", 16, 22.084672, 0.622536)):
        model = build("nb201", ARCH, dataset, seed=0)
        x = torch.zeros(2, 3, size, size)
        y = torch.zeros(2, dtype=torch.long)
        assert compute("flops", model, x, y) == pytest.approx(fl, abs=1e-6)
        assert compute("params", model, x, y) == pytest.approx(pa, abs=1e-6)


def test_custom_loss_fn_is_used(batch):
    x, y = batch
    calls: list[int] = []

    def mse(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return F.mse_loss(out, F.one_hot(t, out.shape[1]).float())

    ce = compute("snip", tiny(), x, y)
    assert compute("snip", tiny(), x, y, loss_fn=mse) != pytest.approx(ce)
    assert calls == [8]
    calls.clear()
    compute("zico", tiny(), x, y, loss_fn=mse)
    assert calls == [4, 4], "zico splits the batch into two sub-batches"


def test_global_rng_untouched(batch):
    x, y = batch
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    compute("zen", tiny(), x, y)
    assert torch.equal(torch.rand(3), expected)


def test_metrics():
    acc = np.arange(10.0)
    assert metrics.spearman(acc * 2, acc) == pytest.approx(1.0)
    assert metrics.kendall(-acc, acc) == pytest.approx(-1.0)
    assert metrics.top_k_precision(acc, acc) == 1.0
    assert metrics.top_k_precision(-acc, acc) == 0.0
    assert math.isnan(metrics.spearman(np.ones(10), acc))
    bad = acc.copy()
    bad[9] = np.nan  # a failed score ranks last
    assert metrics.spearman(bad, acc) < metrics.spearman(acc, acc)
    s = metrics.summarise({"a": {"spearman": 0.5, "kendall": 0.2, "top10": 1.0},
                           "b": {"spearman": 0.3, "kendall": 0.1, "top10": 0.0}})
    assert s["mean_spearman"] == pytest.approx(0.4) and s["worst_spearman"] == pytest.approx(0.3)
    out = metrics.evaluate_scores({"p": acc, "q": -acc}, acc)
    assert out["p"]["spearman"] == pytest.approx(1.0) and out["q"]["kendall"] == pytest.approx(-1.0)
