"""NAS-Bench-301 (DARTS) space: keys, networks and published parameter counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eznas import records
from eznas.errors import EznasError
from eznas.spaces import get_space, units

# (in, op) pairs; ops 3/4 sep conv (2 units), 5/6 dil conv (1 unit), 0..2 no unit
KEY = ("[[(1, 6), (0, 3), (1, 1), (0, 2), (3, 5), (1, 5), (0, 3), (2, 1)], "
       "[(1, 5), (0, 6), (1, 0), (0, 2), (1, 3), (0, 5), (3, 5), (0, 1)]]")


@pytest.fixture(scope="module")
def task(data_dir):
    return records.load_task("nb301", "cifar10", data_dir)


def test_registry_and_alias() -> None:
    assert get_space("darts") is get_space("nb301")
    assert get_space("nb301").name == "nb301"


def test_published_params(task) -> None:
    sp = get_space("nb301")
    params = task.published["params"]
    for i in (0, 1, int(np.argmin(params)), int(np.argmax(params))):
        with torch.no_grad():
            ours = sp.param_count(sp.build(task.archs[i]))
        assert ours == pytest.approx(params[i], abs=1.5e-6), task.archs[i]


def test_forward_shape_small() -> None:
    torch.manual_seed(0)
    net = get_space("nb301").build(KEY, width=8, depth=3)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_encode_decode_roundtrip(task) -> None:
    sp = get_space("nb301")
    for key in task.archs[:50]:
        assert sp.encode(sp.decode(key)) == key


@pytest.mark.parametrize("key", [
    "",
    "[[(1, 6)], [(1, 5)]]",  # too few pairs
    KEY.replace("(1, 6)", "(1, 7)", 1),  # op out of range
    KEY.replace("(1, 6)", "(2, 6)", 1),  # node 2 reading itself
    KEY.replace("(0, 3)", "(1, 3)", 1),  # node 2 with input 1 twice
    KEY.replace("(1, 6)", "(-1, 6)", 1),
    KEY.replace("[[", "[[[", 1),  # broken structure
    KEY.replace(", (0, 3)", " (0, 3)", 1),
    "__import__('os')",
])
def test_malformed_key_raises(key: str) -> None:
    with pytest.raises(EznasError):
        get_space("nb301").decode(key)


def test_unit_count() -> None:
    net = get_space("nb301").build(KEY)
    # preprocessing: 8 cells x 2, minus the 2 FactorizedReduces after the reduction cells = 14
    # normal cell: sep 3x3 x2 (4 units) + dil x3 (3) = 7 units, 6 normal cells -> 42
    # reduce cell: dil x4 (4) + sep x1 (2) = 6 units, 2 reduce cells -> 12
    assert len(units(net)) == 14 + 42 + 12


def test_random_key_valid() -> None:
    sp = get_space("nb301")
    rng = np.random.default_rng(0)
    keys = [sp.random_key(rng) for _ in range(20)]
    for key in keys:
        assert sp.encode(sp.decode(key)) == key
    assert len(set(keys)) > 1
