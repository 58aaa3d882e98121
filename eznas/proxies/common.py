"""Helpers shared by the proxies: safe copies, the layers measured, losses, sub-batches."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from eznas.proxies.registry import LossFn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def working_copy(model: nn.Module, bn: bool = True, train: bool = True) -> nn.Module:
    """A deep copy to run and modify freely: gradients cleared, in training mode by default.
    ``bn=False`` replaces every BatchNorm by the identity (NASLib's ``copynet(bn=False)``)."""
    net = copy.deepcopy(model)
    for p in net.parameters():
        p.grad = None
        p.requires_grad_(True)
    if not bn:
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, _BN):
                    setattr(parent, name, nn.Identity())
    return net.train(train)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The layers per-weight measures sum over: every ``Conv2d`` and ``Linear`` (NASLib's
    ``get_layer_metric_array``), in module order."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def loss_or_default(loss_fn: LossFn | None) -> LossFn:
    return loss_fn if loss_fn is not None else F.cross_entropy


def to_device(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dev = device_of(model)
    return inputs.to(dev), targets.to(dev)


def sub_batches(inputs: torch.Tensor, targets: torch.Tensor, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` contiguous slices of the batch (NASLib's ``split_data``); views, so a space loss can
    locate a slice inside the full batch."""
    size = inputs.shape[0]
    for i in range(n):
        st, en = i * size // n, (i + 1) * size // n
        yield inputs[st:en], targets[st:en]


def backward_loss(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn) -> None:
    """One forward and backward pass; gradients accumulate in ``.grad``."""
    loss_fn(net(inputs), targets).backward()


def finite_or_nan(x: float) -> float:
    return float(x) if math.isfinite(x) else math.nan


def drawn_on_cpu(w: torch.Tensor, draw: Callable[[torch.Tensor], object]) -> None:
    """Apply the in-place initialiser ``draw`` to ``w`` with the CPU's global RNG whatever ``w``'s
    device, so a net on CUDA gets the same random weights as the same net on the CPU (CUDA has its
    own generator: drawing there would give another sample, and other scores)."""
    if w.device.type == "cpu":
        draw(w)
        return
    tmp = torch.empty(w.shape, dtype=w.dtype)
    draw(tmp)
    w.copy_(tmp)


def gaussian_init(net: nn.Module) -> None:
    """Zen-NAS / SWAP init: conv / linear weights N(0, 1), biases 0, BatchNorm / GroupNorm weight 1 bias 0.
    Draws from the global CPU RNG (also for a net on CUDA): callers fork and seed it."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                drawn_on_cpu(m.weight, nn.init.normal_)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
