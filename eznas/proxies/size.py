"""Data-free size proxies: params, flops, l2_norm."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from eznas.proxies.registry import LossFn, register
from eznas.proxies.common import device_of, weight_layers, working_copy

_ACTS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)


@register("params")
def params(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """Number of parameters in millions (every parameter tensor), as NAS-Bench-Suite-Zero's ``params``."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool_flops(m: nn.Module, x: torch.Tensor) -> int:
    kh, kw = _pair(m.kernel_size)
    sh, _ = _pair(m.stride if m.stride is not None else m.kernel_size)
    ph, pw = _pair(m.padding)
    out_w = math.floor((x.shape[3] + 2 * ph - kh) / sh + 1)  # torchstat uses stride[0] for both
    out_h = math.floor((x.shape[2] + 2 * pw - kw) / sh + 1)
    return x.shape[0] * x.shape[1] * out_w * out_h * kh * kw


def _adaptive_pool_flops(x: torch.Tensor, out: torch.Tensor) -> int:
    oh, ow = out.shape[2], out.shape[3]
    h, w = x.shape[2], x.shape[3]
    total = 0
    for i in range(oh):
        ys, ye = (i * h) // oh, math.ceil((i + 1) * h / oh)
        for j in range(ow):
            xs, xe = (j * w) // ow, math.ceil((j + 1) * w / ow)
            total += x.shape[0] * x.shape[1] * (ye - ys + 1) * (xe - xs + 1)
    return total


def module_flops(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """torchstat's FLOP count of one call of a leaf module (0 for unsupported types)."""
    if isinstance(m, nn.Conv2d):
        per_pos = m.kernel_size[0] * m.kernel_size[1] * x.shape[1] * (out.shape[1] // m.groups)
        positions = out.shape[0] * out.shape[2] * out.shape[3]
        return per_pos * positions + (out.shape[1] * positions if m.bias is not None else 0)
    if isinstance(m, nn.BatchNorm2d):
        return x.numel() * (2 if m.affine else 1)
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        return _pool_flops(m, x)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive_pool_flops(x, out)
    if isinstance(m, _ACTS):
        return x.numel()
    if isinstance(m, nn.Upsample):
        return out.numel()
    if isinstance(m, nn.Linear):
        return int(np.prod(x.shape[:-1])) * m.in_features * m.out_features
    return 0


@register("flops")
def flops(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """FLOPs in millions for one input image, NAS-Bench-Suite-Zero's convention (tensorwatch /
    torchstat ``ModelStats.Flops``): conv multiply-accumulates (+ bias), linear in x out,
    BatchNorm 2 per element (affine), activations 1 per element, pooling kernel-area per output,
    adaptive pooling (window+1)^2 per output; each leaf module counted once (its last call),
    eval mode, batch of one. E.g. NB201 ``(0, 2, 3, 2, 3, 1)`` on CIFAR-10: 88.307392."""
    net = working_copy(model, train=False)
    last: dict[int, int] = {}
    leaves = [m for m in net.modules() if not list(m.children())]

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        if inp and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor):
            last[id(m)] = module_flops(m, inp[0], out)

    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            net(torch.zeros((1, *inputs.shape[1:]), dtype=inputs.dtype, device=device_of(net)))
    finally:
        for h in handles:
            h.remove()
    return sum(last.values()) / 1e6


@register("l2_norm")
def l2_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """Sum over Conv2d/Linear layers of the Frobenius norm of the weight at initialisation
    (NASLib ``l2_norm``, no data)."""
    with torch.no_grad():
        return float(sum(m.weight.norm() for m in weight_layers(model)))
