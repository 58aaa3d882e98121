"""Every primitive is total (finite or NaN, right shape, never raises) and computes what it says."""
from __future__ import annotations

import math

import pytest
import torch

from eznas import primitives as P
from eznas.primitives import Scalar, Tensor

ROWS, R, S = 3, 2, 4
NAN, INF = float("nan"), float("inf")


def _base() -> torch.Tensor:
    return torch.randn(ROWS, R, S, S, generator=torch.Generator().manual_seed(0))


def _edge_inputs() -> dict[str, torch.Tensor]:
    base = _base()
    with_nan, with_inf = base.clone(), base.clone()
    with_nan[0, 0, 0, 0] = NAN
    with_inf[1, 1, 1, 1], with_inf[2, 0, 0, 0] = INF, -INF
    padded = torch.zeros_like(base)
    padded[:, :, :2, :2] = base[:, :, :2, :2]
    return {
        "random": base, "zeros": torch.zeros_like(base), "negative": -base.abs(), "huge": base * 1e30,
        "tiny": base * 1e-30, "nan": with_nan, "inf": with_inf, "all_nan": torch.full_like(base, NAN),
        "float_max": torch.full_like(base, 3.4e38), "padded": padded, "ones": torch.ones_like(base),
    }


def _call(spec: P.PrimitiveSpec, x: torch.Tensor) -> torch.Tensor:
    args = [x if t is Tensor else x.flatten(1)[:, 0] for t in spec.args]
    if spec.arity == 2:  # a second, different argument of the same kind
        args[1] = args[1].roll(1, dims=0)
    return spec.fn(*args)


@pytest.mark.parametrize("name", P.names())
def test_primitive_is_total(name: str) -> None:
    spec = P.get(name)
    shape = (ROWS,) if spec.ret is Scalar else (ROWS, R, S, S)
    for label, x in _edge_inputs().items():
        out = _call(spec, x)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32, (name, label)
        assert tuple(out.shape) == shape, (name, label, tuple(out.shape))
        assert not torch.isinf(out).any(), (name, label, out)


def test_registry_shape() -> None:
    assert len(P.names()) >= 40
    for spec in P.REGISTRY.values():
        assert spec.ret in (Tensor, Scalar) and all(t in (Tensor, Scalar) for t in spec.args)
        assert spec.doc, spec.name
    with pytest.raises(ValueError):
        P.primitive("add", [Tensor, Tensor], Tensor)(lambda a, b: a)


def test_paper_set_is_registered() -> None:
    paper = ("add sub mul div inv abs square sqrt log abslog exp sigmoid relu sign heaviside lt gt eq "
             "gt0 lt0 normalize softmax matmul transpose slogdet eig_ratio svd_ratio frob mean sum mean_abs "
             "std l1 cosine kl hamming numel add_s sub_s mul_s div_s log_s abs_s neg_s").split()
    assert not set(paper) - set(P.names())


def test_reductions_exact() -> None:
    x = _base()
    flat = x.flatten(1).double()
    close = lambda a, b: torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)  # noqa: E731
    close(P.mean(x), flat.mean(1))
    close(P.sum_(x), flat.sum(1))
    close(P.mean_abs(x), flat.abs().mean(1))
    close(P.l1(x), flat.abs().sum(1))
    close(P.frob(x), flat.pow(2).sum(1).sqrt())
    close(P.std(x), flat.std(1, correction=0))
    assert P.numel(torch.tensor([[[[0.0, 1.0], [2.0, 0.0]]]])).tolist() == [2.0]


def test_pair_reductions_exact() -> None:
    x = _base()
    torch.testing.assert_close(P.cosine(x, x), torch.ones(ROWS))
    torch.testing.assert_close(P.cosine(x, -x), -torch.ones(ROWS))
    torch.testing.assert_close(P.cosine(x, 3 * x), torch.ones(ROWS))
    assert P.cosine(x, torch.zeros_like(x)).tolist() == [0.0] * ROWS
    assert P.hamming(x, x).tolist() == [0.0] * ROWS
    assert P.hamming(x, -x).tolist() == [1.0] * ROWS
    torch.testing.assert_close(P.kl(x, x), torch.zeros(ROWS), atol=1e-6, rtol=0)
    assert (P.kl(x, x.roll(1, dims=0)) > 0).all()


def test_elementwise_exact() -> None:
    x = _base()
    torch.testing.assert_close(P.transpose(P.transpose(x)), x)
    torch.testing.assert_close(P.matmul(x, x), x @ x)
    torch.testing.assert_close(P.add(x, x), 2 * x)
    z = torch.tensor([[[[-2.0, 0.0], [0.5, 4.0]]]])
    assert P.div(z, torch.zeros_like(z)).tolist() == [[[[0.0, 0.0], [0.0, 0.0]]]]
    assert P.div(z, z).tolist() == [[[[1.0, 0.0], [1.0, 1.0]]]]
    assert P.inv(z).tolist() == [[[[-0.5, 0.0], [2.0, 0.25]]]]
    torch.testing.assert_close(P.log(z), torch.tensor([[[[0.0, 0.0], [math.log(0.5), math.log(4.0)]]]]))
    torch.testing.assert_close(P.abslog(z), torch.tensor([[[[math.log(2.0), 0.0], [math.log(0.5), math.log(4.0)]]]]))
    torch.testing.assert_close(P.sqrt(z), torch.tensor([[[[math.sqrt(2.0), 0.0], [math.sqrt(0.5), 2.0]]]]))
    assert P.heaviside(z).tolist() == [[[[0.0, 0.5], [1.0, 1.0]]]]
    assert P.gt0(z).tolist() == [[[[0.0, 0.0], [1.0, 1.0]]]]
    assert P.lt0(z).tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
    assert torch.isfinite(P.exp(torch.full((1, 1, 2, 2), 1e4))).all()
    torch.testing.assert_close(P.softmax(x).sum(-1), torch.ones(ROWS, R, S))


def test_normalize() -> None:
    y = P.normalize(_base() * 5 + 3)
    torch.testing.assert_close(y.mean((1, 2, 3)), torch.zeros(ROWS), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((1, 2, 3), correction=0), torch.ones(ROWS))
    assert P.normalize(torch.ones(1, 1, 2, 2)).tolist() == [[[[0.0, 0.0], [0.0, 0.0]]]]


def test_matrix_reductions() -> None:
    x = _base()
    logdet = torch.linalg.slogdet(x).logabsdet.mean(-1)
    torch.testing.assert_close(P.slogdet(x), logdet, rtol=1e-4, atol=1e-4)
    sv = torch.linalg.svdvals(x)
    torch.testing.assert_close(P.svd_ratio(x), (sv[..., 0] / sv[..., -1]).mean(-1), rtol=1e-4, atol=1e-4)
    ev = torch.linalg.eigvals(x).abs()
    torch.testing.assert_close(P.eig_ratio(x), (ev.amax(-1) / ev.amin(-1)).mean(-1), rtol=1e-3, atol=1e-3)
    # zero padding does not make the (pseudo-)determinant -inf: it is the log det of the live part
    padded = torch.zeros_like(x)
    padded[:, :, :2, :2] = x[:, :, :2, :2]
    live = torch.linalg.slogdet(x[:, :, :2, :2]).logabsdet.mean(-1)
    torch.testing.assert_close(P.slogdet(padded), live, rtol=1e-4, atol=1e-4)
    assert torch.isnan(P.slogdet(torch.zeros_like(x))).all()


def test_scalar_ops() -> None:
    a, b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([2.0, 0.0, -1.0])
    assert P.add_s(a, b).tolist() == [3.0, -2.0, 2.0]
    assert P.sub_s(a, b).tolist() == [-1.0, -2.0, 4.0]
    assert P.mul_s(a, b).tolist() == [2.0, -0.0, -3.0]
    assert P.div_s(a, b).tolist() == [0.5, 0.0, -3.0]
    assert P.neg_s(a).tolist() == [-1.0, 2.0, -3.0]
    assert P.abs_s(b).tolist() == [2.0, 0.0, 1.0]
    torch.testing.assert_close(P.log_s(b), torch.tensor([math.log(2.0), 0.0, 0.0]))
    assert P.add_s(1.0, 2.0).item() == 3.0  # plain constants are accepted too
