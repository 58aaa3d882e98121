"""TransNAS-Bench-101 micro space: keys, networks per task, losses and published parameter counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eznas import records
from eznas.errors import EznasError
from eznas.spaces import get_space, units
from eznas.spaces.tnb import image_to_tiles, pseudo_normals

TASKS = ("class_scene", "class_object", "autoencoder", "normal", "jigsaw", "room_layout", "segmentsemantic")
KEY = "(1, 0, 0, 2, 2, 3)"  # 0->1 skip, 0->2 / 1->2 zero, 0->3 / 1->3 conv1x1, 2->3 conv3x3


@pytest.fixture(scope="module")
def tasks(data_dir):
    return records.load_tasks("tnb_micro", data_dir)


def _params(key: str, dataset: str) -> float:
    sp = get_space("tnb_micro")
    with torch.no_grad():
        return sp.param_count(sp.build(key, dataset))


def test_registry_and_aliases() -> None:
    assert get_space("tnb101_micro") is get_space("tnb_micro")
    assert get_space("transbench101_micro").name == "tnb_micro"


@pytest.mark.parametrize("dataset", ["class_scene", "class_object"])
def test_published_params_classification(tasks, dataset: str) -> None:
    task = tasks[dataset]
    params = task.published["params"]
    for i in (0, 1, 2, int(np.argmin(params)), int(np.argmax(params))):
        assert _params(task.archs[i], dataset) == pytest.approx(params[i], abs=1.5e-6), task.archs[i]


@pytest.mark.parametrize("dataset", ["autoencoder", "normal", "jigsaw", "room_layout", "segmentsemantic"])
def test_published_params_other_tasks(tasks, dataset: str) -> None:
    task = tasks[dataset]
    i = task.archs.index(KEY)
    assert _params(KEY, dataset) == pytest.approx(task.published["params"][i], abs=1.5e-6)


def test_keys_are_tnb_codes_in_tnb_edge_order(tasks) -> None:
    """One skip edge leaving the cell input, rest zero / skip: the same network size for all three."""
    task = tasks["class_scene"]
    keys = ["(1, 0, 1, 0, 0, 1)", "(1, 0, 0, 0, 1, 0)", "(0, 1, 1, 0, 0, 1)"]
    for key in keys:
        assert _params(key, "class_scene") == pytest.approx(0.225631, abs=1.5e-6)
        assert task.published["params"][task.archs.index(key)] == pytest.approx(0.225631, abs=1.5e-6)


def test_units() -> None:
    net = get_space("tnb_micro").build(KEY, "class_scene")
    # stem ReLU-Conv-BN + 3 conv edges in each of 5 modules x 2 cells
    assert len(units(net)) == 1 + 3 * 10
    assert len(units(get_space("tnb_micro").build("(1, 1, 0, 0, 0, 1)", "class_scene"))) == 1


@pytest.mark.parametrize("dataset", TASKS)
def test_forward_loss_backward_small(dataset: str) -> None:
    sp = get_space("tnb_micro")
    torch.manual_seed(0)
    net = sp.build("(3, 1, 2, 3, 0, 2)", dataset, width=8, depth=1)
    size = sp.input_size(dataset)
    x = torch.randn(2, 3, size, size)
    targets = torch.tensor([3, 9])
    out = net(x)
    shapes = {"autoencoder": (2, 3, 32, 32), "normal": (2, 3, 32, 32), "segmentsemantic": (2, 17, 32, 32)}
    assert tuple(out.shape) == shapes.get(dataset, (2, sp.num_classes(dataset)))
    loss = sp.loss(out, x, targets, dataset)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [u.weight_conv.weight.grad for u in units(net)]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_jigsaw_tiles() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    tiles = image_to_tiles(x)
    assert tuple(tiles.shape) == (2, 9, 3, 16, 16)
    assert tiles[0, 0].mean() < tiles[0, 1].mean() < tiles[0, 3].mean()  # row-major


def test_pseudo_normals_unit_length() -> None:
    n = pseudo_normals(torch.randn(2, 3, 8, 8))
    assert tuple(n.shape) == (2, 3, 8, 8)
    assert torch.allclose(n.norm(dim=1), torch.ones(2, 8, 8), atol=1e-6)
    flat = pseudo_normals(torch.ones(1, 3, 4, 4))
    assert torch.allclose(flat[:, 2], torch.ones(1, 4, 4))


def test_encode_decode_roundtrip(tasks) -> None:
    sp = get_space("tnb_micro")
    for key in tasks["class_scene"].archs[:50]:
        assert sp.encode(sp.decode(key)) == key


@pytest.mark.parametrize("key", [
    "", "(1, 0, 0, 2, 2)", "(1, 0, 0, 2, 2, 3, 0)", "(1, 0, 0, 2, 2, 4)", "(-1, 0, 0, 2, 2, 3)",
    "(1, 0, 0, 2, 2, 3.5)", "__import__('os')", "64-41414-1_00_223x",
])
def test_malformed_key(key: str) -> None:
    with pytest.raises(EznasError):
        get_space("tnb_micro").decode(key)


def test_bad_dataset_and_width() -> None:
    sp = get_space("tnb_micro")
    with pytest.raises(EznasError):
        sp.build(KEY, "cifar10")
    with pytest.raises(EznasError):
        sp.build(KEY, "class_scene", width=7)
    with pytest.raises(EznasError):
        sp.loss(torch.zeros(2, 10), torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long), "cifar10")


def test_random_key_valid() -> None:
    sp = get_space("tnb_micro")
    rng = np.random.default_rng(0)
    keys = {sp.random_key(rng) for _ in range(200)}
    assert len(keys) > 150
    for key in keys:
        assert sp.encode(sp.decode(key)) == key
