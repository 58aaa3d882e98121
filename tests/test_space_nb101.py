"""NAS-Bench-101 space: keys, pruning, networks and published parameter counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eznas import records
from eznas.errors import EznasError
from eznas.spaces import count_params, get_space, units
from eznas.spaces.nb101 import prune

# NB101's own example (module_adjacency / module_operations of its README query), with
# trainable_parameters 2694282: ops input, conv3x3, conv1x1, maxpool, conv3x3, conv3x3, output
_M = [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0] * 7]
KEY = str(tuple(v for row in _M for v in row) + (0, 4, 3, 2, 4, 4, 1))


def _key(values: list[int]) -> str:
    return str(tuple(values))


@pytest.fixture(scope="module")
def task(data_dir):
    return records.load_task("nb101", "cifar10", data_dir)


def test_registry() -> None:
    assert get_space("nb101").name == "nb101"


def test_nb101_example_params() -> None:
    with torch.no_grad():
        assert count_params(get_space("nb101").build(KEY)) == 2694282


def test_published_params(task) -> None:
    sp = get_space("nb101")
    params = task.published["params"]
    for i in (0, 1, 2, int(np.argmin(params)), int(np.argmax(params))):
        with torch.no_grad():
            ours = sp.param_count(sp.build(task.archs[i]))
        assert ours == pytest.approx(params[i], abs=1.5e-6), task.archs[i]


def test_benchmark_keys_decode_and_prune(task) -> None:
    sp = get_space("nb101")
    sizes = set()
    for key in task.archs:
        arch = sp.decode(key)
        assert sp.encode(arch) == key
        spec = prune(arch)
        assert spec is not None and spec.matrix.sum() <= 9
        sizes.add(spec.n)
    assert min(sizes) < 7  # the benchmark holds cells with pruned vertices


def test_forward_shape_small() -> None:
    torch.manual_seed(0)
    net = get_space("nb101").build(KEY, width=8, depth=1)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_width_depth_change_size() -> None:
    sp = get_space("nb101")
    big, small = sp.build(KEY), sp.build(KEY, width=8, depth=1)
    assert count_params(small) < count_params(big)
    assert sum(isinstance(m, nn.Conv2d) for m in small.modules()) < sum(
        isinstance(m, nn.Conv2d) for m in big.modules())


def test_units_are_all_convs(task) -> None:
    sp = get_space("nb101")
    for key in (KEY, *task.archs[:5]):
        net = sp.build(key, width=8, depth=1)
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        us = units(net)
        assert len(us) == len(convs) > 0
        assert [u.weight_conv for u in us] == convs


def test_input_output_only_cell() -> None:
    values = [0] * 56
    values[6] = 1  # edge input -> output; all other vertices pruned
    values[49:] = [0, 2, 2, 2, 2, 2, 1]
    net = get_space("nb101").build(_key(values), width=8, depth=1)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert len(units(net)) == 1 + 3  # stem + one projection per cell


def _variant(index: int, value: int) -> str:
    values = [int(t) for t in KEY.strip("()").split(",")]
    values[index] = value
    return _key(values)


@pytest.mark.parametrize("key", [
    "",
    "(0, 1, 1)",  # too short
    KEY[:-1] + ", 1)",  # too long
    _variant(1, 2),  # adjacency value not 0/1
    _variant(7, 1),  # below the diagonal
    _variant(0, 1),  # self loop
    _variant(49, 4),  # first op not input
    _variant(55, 4),  # last op not output
    _variant(50, 5),  # op out of range
    _variant(50, 1),  # output op inside the cell
    _key([0] * 49 + [0, 2, 2, 2, 2, 2, 1]),  # no edges: output unreachable
    _key([1 if j > i else 0 for i in range(7) for j in range(7)] + [0, 2, 3, 4, 2, 3, 1]),  # 21 edges
    "__import__('os')",
    "(0, 1, 'a')",
])
def test_malformed_keys(key: str) -> None:
    with pytest.raises(EznasError):
        get_space("nb101").decode(key)
    with pytest.raises(EznasError):
        get_space("nb101").build(key)


def test_unknown_dataset() -> None:
    with pytest.raises(EznasError):
        get_space("nb101").build(KEY, "cifar100")


def test_random_key_valid() -> None:
    sp = get_space("nb101")
    rng = np.random.default_rng(0)
    keys = [sp.random_key(rng) for _ in range(30)]
    assert len(set(keys)) > 20
    for key in keys:
        arch = sp.decode(key)
        assert sp.encode(arch) == key
        spec = prune(arch)
        assert spec is not None and spec.n <= 7 and spec.matrix.sum() <= 9
    net = sp.build(keys[0], width=8, depth=1)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
