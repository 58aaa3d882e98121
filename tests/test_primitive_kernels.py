"""The fast primitive kernels (eznas/primitives.py, eznas/block_linalg.py) against straightforward
reference implementations, on real statistics rows of small NB201 nets and on edge cases.

Stated tolerances:

* element-wise ops, comparisons, ``mean``/``sum``/``numel``/``hamming``/``frob``/``cosine``/``kl``:
  equal bit for bit (NaN where the reference is NaN);
* ``softmax``, ``log_softmax``: within 2e-6 absolute (float32 rounding of max / exp / sum);
* ``std``, ``normalize``: within 2e-6 relative (two-pass instead of Welford);
* ``eig_ratio``: equal bit for bit (float32 ``geev`` on the same blocks; zero and NaN blocks are
  just not sent to LAPACK);
* ``slogdet``, ``svd_ratio``: singular values come from the float64 Gram matrix, so they are
  compared with the reference computed with float64 ``svdvals`` to 1e-4 relative (1e-5 absolute),
  and with the old float32 ``svdvals`` to that reference's own error, 1e-3 relative (same NaN
  pattern; measured on these rows: at most 5.3e-4 on terminals, 4.8e-3 for ``svd_ratio`` of a
  product of activations whose condition numbers reach ~1e5, where float32 SVD itself is off by
  that much).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from eznas import block_linalg as BL
from eznas import primitives as P
from eznas.stats import StatsSettings, compute_net, net_batches
from eznas.tensors import INDEX

NAN, INF, EPS = float("nan"), float("inf"), 1e-12
ARCHS = ("(0, 2, 3, 2, 3, 1)", "(4, 4, 2, 3, 0, 1)")


# ----------------------------------------------------------------------------- references (the plain way)
def _fin(x):
    return torch.nan_to_num(x, nan=NAN, posinf=NAN, neginf=NAN)


def _den(x):
    return torch.where(x.abs() <= EPS, INF, x)


def _blocks(x, dtype):
    finite = torch.isfinite(x)
    bad = ~finite.all(-1).all(-1)
    clean = torch.where(finite, x, 0.0)
    scale = clean.abs().amax(dim=(-1, -2))
    return (clean / torch.where(scale > 0, scale, 1.0)[..., None, None]).to(dtype), scale, bad


def _block_mean(per_block, keep, bad):
    out = torch.where(keep, per_block, 0.0).sum(-1) / keep.sum(-1)
    return _fin(torch.where(bad.any(-1), NAN, out))


def _ratio(mags, bad):
    top = mags.amax(-1, keepdim=True)
    live = mags > top * (P.RTOL * mags.shape[-1])
    low = torch.where(live, mags, INF).amin(-1)
    return _block_mean((top[..., 0] / low).float(), live.any(-1), bad)


def ref_slogdet(x, dtype=torch.float32):
    """The old slogdet: float32 LU decides which blocks are singular; their singular values in ``dtype``."""
    scaled, scale, bad = _blocks(x, torch.float32)
    n = x.shape[-1]
    sv = torch.linalg.svdvals(scaled.to(dtype))
    live = sv > sv[..., :1] * (P.RTOL * n)
    logabs, rank = torch.where(live, sv, 1.0).log().sum(-1), live.sum(-1)
    lu = torch.linalg.slogdet(scaled).logabsdet
    full = lu > math.log(P.RTOL) * n
    logabs, rank = torch.where(full, lu, logabs).float(), torch.where(full, n, rank).float()
    return _block_mean(logabs + rank * torch.where(scale > 0, scale, 1.0).log(), rank > 0, bad)


def ref_eig_ratio(x, dtype=torch.float32):
    scaled, _, bad = _blocks(x, dtype)
    return _ratio(torch.linalg.eigvals(scaled).abs(), bad)


def ref_svd_ratio(x, dtype=torch.float32):
    scaled, _, bad = _blocks(x, dtype)
    return _ratio(torch.linalg.svdvals(scaled), bad)


DIMS = (1, 2, 3)
EXACT = {
    "add": lambda a, b: _fin(a + b), "sub": lambda a, b: _fin(a - b), "mul": lambda a, b: _fin(a * b),
    "div": lambda a, b: _fin(a / _den(b)), "lt": lambda a, b: (a < b).float(), "gt": lambda a, b: (a > b).float(),
    "eq": lambda a, b: (a == b).float(), "matmul": lambda a, b: _fin(a @ b), "inv": lambda x: _fin(1.0 / _den(x)),
    "abs": lambda x: _fin(x.abs()), "square": lambda x: _fin(x * x), "sqrt": lambda x: _fin(x.abs().sqrt()),
    "log": lambda x: torch.nan_to_num(torch.relu(x).log(), nan=NAN, posinf=NAN, neginf=0.0),
    "abslog": lambda x: torch.nan_to_num(x.abs().log(), nan=NAN, posinf=NAN, neginf=0.0),
    "exp": lambda x: torch.clamp(x, max=P.EXP_MAX).exp(), "sigmoid": torch.sigmoid, "relu": lambda x: _fin(x.relu()),
    "sign": torch.sign, "heaviside": lambda x: torch.heaviside(x, x.new_tensor(0.5)),
    "gt0": lambda x: (x > 0).float(), "lt0": lambda x: (x < 0).float(), "transpose": lambda x: _fin(x.mT),
    "mean": lambda x: _fin(x.mean(DIMS)), "sum": lambda x: _fin(x.sum(DIMS)),
    "numel": lambda x: (x != 0).sum(DIMS).float(),
    "hamming": lambda a, b: torch.count_nonzero(torch.sign(a) != torch.sign(b), dim=DIMS) / a[0].numel(),
    "frob": lambda x: _fin(torch.linalg.vector_norm(x, dim=DIMS)),
    "cosine": lambda a, b: _fin((a * b).sum(DIMS) / torch.where(
        (d := torch.linalg.vector_norm(a, dim=DIMS) * torch.linalg.vector_norm(b, dim=DIMS)) > 0, d, INF)),
    "kl": lambda a, b: _fin(F.kl_div(torch.log_softmax(b.flatten(1), 1), torch.log_softmax(a.flatten(1), 1),
                                     reduction="none", log_target=True).sum(1)),
}
CLOSE = {  # name: (reference, absolute tolerance, relative tolerance)
    "softmax": (lambda x: torch.softmax(x, -1), 2e-6, 0.0),
    "log_softmax": (lambda x: _fin(torch.log_softmax(x, -1)), 2e-6, 0.0),
    "std": (lambda x: _fin(x.std(DIMS, correction=0)), 0.0, 2e-6),
    "normalize": (lambda x: _fin((x - x.mean(DIMS, keepdim=True)) / _den(x.std(DIMS, correction=0, keepdim=True))),
                  2e-6, 2e-6),
}
MATRIX = {"slogdet": ref_slogdet, "svd_ratio": ref_svd_ratio}


# ----------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def rows(data_dir) -> torch.Tensor:
    """Real statistics (units, 22, R, s, s) of two small NB201 nets, float32 as the search sees them."""
    st = StatsSettings("nb201", "cifar10", batch_size=16, seed=0, R=4, s=8, dtype="float32", width=8, depth=1)
    batches = net_batches(st)
    return torch.cat([compute_net(a, st, batches)[0] for a in ARCHS])


def _inputs(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Real terminals, tensors programs make from them (rank-deficient, constant, huge), edge cases."""
    t = {n: rows[:, INDEX[n]] for n in ("W", "A_D", "gX_D", "Z_N", "gW_P", "X_P")}
    out = dict(t)
    out["A_D@A_D^T"] = t["A_D"] @ t["A_D"].mT  # symmetric, often singular
    out["gt0(A_D)"] = (t["A_D"] > 0).float()  # 0/1 blocks
    out["const"] = torch.full_like(t["W"], 0.1)
    out["huge"] = t["Z_N"] * 1e35
    out["tiny"] = t["W"] * 1e-30
    edge = t["gX_D"].clone()
    edge[0, 0, 0, 0], edge[1, 1, 2, 3], edge[2, 2, 1, 1] = NAN, INF, -INF
    edge[3] = 0.0
    edge[4, :, 4:, :] = 0.0  # zero-padded half blocks
    out["edge"] = edge
    return out


def _same(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and torch.equal(
        torch.nan_to_num(got, nan=7.25), torch.nan_to_num(want, nan=7.25))


def _msg(name: str, label: str):
    return lambda m: f"{name} {label}: {m}"


def _pairs(inputs: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    names = list(inputs)
    return [(f"{a},{b}", inputs[a], inputs[b]) for a, b in zip(names, names[1:] + names[:1])]


# ----------------------------------------------------------------------------- tests
def test_exact_kernels_equal_reference(rows) -> None:
    inputs = _inputs(rows)
    for name, ref in EXACT.items():
        fn = P.get(name).fn
        cases = _pairs(inputs) if P.get(name).arity == 2 else [(k, v, None) for k, v in inputs.items()]
        for label, a, b in cases:
            args = (a,) if b is None else (a, b)
            assert _same(fn(*args), ref(*args)), (name, label)


def test_close_kernels_within_tolerance(rows) -> None:
    for name, (ref, atol, rtol) in CLOSE.items():
        for label, x in _inputs(rows).items():
            got, want = P.get(name).fn(x), ref(x)
            assert torch.equal(torch.isnan(got), torch.isnan(want)), (name, label)
            torch.testing.assert_close(got, want, atol=atol, rtol=rtol, equal_nan=True, msg=_msg(name, label))
    # a constant row is centred to exact zeros, as torch's std_mean does
    const = torch.full((2, 3, 4, 4), 0.1)
    assert P.std(const).tolist() == [0.0, 0.0] and not P.normalize(const).any()
    huge = torch.full((1, 2, 4, 4), 3.4e38)  # a float32 sum overflows; the float64 mean does not
    assert P.std(huge).tolist() == [0.0] and P.normalize(huge).abs().sum() == 0


def test_eig_ratio_equals_reference(rows) -> None:
    for label, x in _inputs(rows).items():
        assert _same(P.eig_ratio(x), ref_eig_ratio(x)), label


def test_matrix_kernels_match_float64_lapack(rows) -> None:
    for name, ref in MATRIX.items():
        for label, x in _inputs(rows).items():
            got, exact = P.get(name).fn(x), ref(x, torch.float64)
            assert torch.equal(torch.isnan(got), torch.isnan(exact)), (name, label)
            torch.testing.assert_close(got, exact, atol=1e-5, rtol=1e-4, equal_nan=True, msg=_msg(name, label))


def test_matrix_kernels_match_old_float32_within_its_error(rows) -> None:
    inputs = _inputs(rows)
    del inputs["A_D@A_D^T"]  # condition numbers ~1e5: float32 SVD itself is off by ~5e-3 there
    for name, ref in MATRIX.items():
        for label, x in inputs.items():
            got, old = P.get(name).fn(x), ref(x, torch.float32)
            assert torch.equal(torch.isnan(got), torch.isnan(old)), (name, label)
            torch.testing.assert_close(got, old, atol=1e-6, rtol=1e-3, equal_nan=True, msg=_msg(name, label))


def test_block_linalg_helpers(rows) -> None:
    x = _inputs(rows)["edge"]
    scaled, scale, bad = BL.scaled_blocks(x)
    want_scaled, want_scale, want_bad = _blocks(x, torch.float32)
    assert torch.equal(scaled, want_scaled) and torch.equal(scale, want_scale) and torch.equal(bad, want_bad)
    index, blocks = BL.live_blocks(scaled, scale, bad)
    live = (scale > 0) & ~bad.any(-1, keepdim=True)  # zero blocks and rows holding NaN / inf left out
    assert len(index) == int(live.sum()) < int((scale > 0).sum())
    sv64 = torch.linalg.svdvals(blocks.double())
    torch.testing.assert_close(BL.singular_values(blocks), sv64, atol=1e-7, rtol=0)  # of the largest, which is <= 1
    assert torch.equal(BL.eig_magnitudes(blocks), torch.linalg.eigvals(blocks).abs())
    back = BL.scatter_blocks(index, torch.ones(len(index)), scale.shape, 0.0)
    assert back.shape == scale.shape and int(back.sum()) == len(index)


_REUSE_CHECK = """
import resource, torch
from eznas import primitives as P
from eznas.alloc import reuse_freed_memory
assert reuse_freed_memory()  # the test machines run glibc
x = torch.ones(10_000, 16, 8, 8)
P.add(x, x)  # the first one is faulted in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    P.add(x, x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_freed_memory_is_reused() -> None:
    """After reuse_freed_memory, a primitive's 40 MB output (10k rows) is not page-faulted in afresh
    (in a fresh interpreter: the allocator's state depends on what ran before in this one)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _REUSE_CHECK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    faults = int(r.stdout.split()[-1])
    fresh = 10 * 10_000 * 16 * 8 * 8 * 4 // 4096  # every output faulted in afresh: 97,656 (100,010 measured)
    # glibc reuses some or all of the freed blocks (0 to 70,000 faults seen, run to run)
    assert faults < 0.8 * fresh, faults

