"""Shared passes give exactly the one-by-one scores, on real NB201 nets, and compute each pass once."""
from __future__ import annotations

import math

import pytest

from eznas import proxies
from eznas.batches import make_batches
from eznas.errors import EznasError
from eznas.proxies import passes
from eznas.spaces import build

# a mixed cell, a conv-heavy one, and one whose cell output is all zeros (degenerate scores)
ARCHS = ["(0, 2, 3, 2, 3, 1)", "(3, 3, 3, 3, 3, 3)", "(0, 0, 0, 0, 0, 0)"]
SHARED = [m for p in passes.PASSES for m in p.members]


@pytest.fixture(scope="module")
def batch(data_dir):
    b = make_batches("cifar10", 16, 0, num_classes=10, root=data_dir)
    return b.D, b.targets


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_scores_identical_to_one_by_one(arch, batch):
    x, y = batch
    names = proxies.proxy_names()
    assert set(SHARED) <= set(names)
    model = build("nb201", arch, "cifar10", seed=0, width=8, depth=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    together = passes.score_baselines(names, model, x, y)
    assert list(together) == names
    for name in names:
        alone = proxies.compute(name, model, x, y)
        assert _same(together[name].score, alone), (arch, name, together[name].score, alone)
        assert together[name].seconds >= 0.0
    # the shared passes leave the model as they found it
    for k, v in model.state_dict().items():
        assert v.equal(before[k]), k
    finite = [n for n in SHARED if math.isfinite(together[n].score)]
    assert len(finite) >= 8 if arch != "(0, 0, 0, 0, 0, 0)" else len(finite) >= 2


def test_each_pass_runs_once(batch, monkeypatch):
    x, y = batch
    calls: dict[str, int] = {}
    wrapped = []
    for sp in passes.PASSES:
        def run(*args, _sp=sp):
            calls[_sp.kind] = calls.get(_sp.kind, 0) + 1
            return _sp.run(*args)
        wrapped.append(passes.SharedPass(sp.kind, sp.members, run))
    monkeypatch.setattr(passes, "_BY_MEMBER", {m: p for p in wrapped for m in p.members})
    model = build("nb201", ARCHS[0], "cifar10", seed=0, width=8, depth=1)
    out = passes.score_baselines(SHARED + ["params"], model, x, y)
    assert calls == {sp.kind: 1 for sp in passes.PASSES}
    assert set(out) == set(SHARED) | {"params"}
    # grouping keeps first-appearance order; singles stay alone
    groups = passes.plan(["params", "fisher", "swap", "snip", "reg_swap"])
    assert [(g.kind if g else None, m) for g, m in groups] == [
        (None, ("params",)), ("grad", ("fisher", "snip")), ("swap", ("swap", "reg_swap"))]


def test_failures_and_bad_names(batch):
    x, y = batch
    model = build("nb201", ARCHS[0], "cifar10", seed=0, width=8, depth=1)

    def broken_loss(out, targets):
        raise RuntimeError("loss exploded")

    out = passes.score_baselines(["snip", "fisher", "grasp", "params"], model, x, y, loss_fn=broken_loss)
    assert all(math.isnan(out[n].score) for n in ("snip", "fisher", "grasp"))
    assert "loss exploded" in out["snip"].error and out["params"].error is None
    with pytest.raises(EznasError, match="set-level"):
        passes.score_baselines(["az_nas"], model, x, y)
    with pytest.raises(EznasError, match="unknown proxy"):
        passes.score_baselines(["bogus"], model, x, y)
