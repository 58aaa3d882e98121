"""Gradient-based proxies: synflow, snip, grasp, fisher, grad_norm, plain, zico.

All run on a deep copy in training mode (BatchNorm with batch statistics; synflow without
BatchNorm), one forward/backward over the whole batch unless stated, and sum over the weights
of every Conv2d and Linear layer, as NASLib's measures do for NAS-Bench-Suite-Zero.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from eznas.proxies.registry import LossFn, register
from eznas.proxies.common import (backward_loss, finite_or_nan, loss_or_default, sub_batches, to_device,
                                  weight_layers, working_copy)


def _weight_grads(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  loss_fn: LossFn | None) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """(weights, gradients) of every Conv2d/Linear after one backward pass of the loss on a copy."""
    net = working_copy(model)
    x, y = to_device(net, inputs, targets)
    backward_loss(net, x, y, loss_or_default(loss_fn))
    layers = weight_layers(net)
    return [m.weight.detach() for m in layers], [m.weight.grad for m in layers]


@register("synflow")
def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """SynFlow (Tanaka et al. 2020), NAS-Bench-Suite-Zero variant: BatchNorm removed (bn=False),
    float64, every parameter and buffer made absolute, input one all-ones image, R = sum of the
    output; score sum |w * dR/dw| over Conv2d/Linear weights, reported as log(score)
    (-log(-score) if negative, 0 if 0), as NASLib's ``ZeroCost.query`` does. No data used."""
    net = working_copy(model, bn=False).double()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    net(ones.to(next(net.parameters()).device)).sum().backward()
    total = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in weight_layers(net)
                if m.weight.grad is not None)
    if not math.isfinite(total):
        return math.nan
    if total == 0.0:
        return 0.0
    return math.log(total) if total > 0 else -math.log(-total)


@register("snip")
def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """SNIP (Lee et al. 2019) as NASLib: sum |w * dL/dw| over Conv2d/Linear weights, one batch,
    BatchNorm in training mode, no log."""
    return snip_value(*_weight_grads(model, inputs, targets, loss_fn))


def snip_value(weights: list[torch.Tensor], grads: list[torch.Tensor | None]) -> float:
    """SNIP from one pass's Conv2d/Linear weights and gradients (shared with :mod:`eznas.proxies.passes`)."""
    return finite_or_nan(sum(float((w * g).abs().sum()) for w, g in zip(weights, grads) if g is not None))


@register("grad_norm")
def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """Gradient norm as NASLib: sum over Conv2d/Linear layers of the L2 norm of dL/dw (not squared),
    one batch, BatchNorm in training mode."""
    _, grads = _weight_grads(model, inputs, targets, loss_fn)
    return grad_norm_value(grads)


def grad_norm_value(grads: list[torch.Tensor | None]) -> float:
    """grad_norm from one pass's Conv2d/Linear gradients."""
    return finite_or_nan(sum(float(g.norm()) for g in grads if g is not None))


@register("plain")
def plain(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """Plain (Mozaffari / Abdelfattah et al. 2021): sum of w * dL/dw (signed) over Conv2d/Linear
    weights, one batch, BatchNorm in training mode."""
    return plain_value(*_weight_grads(model, inputs, targets, loss_fn))


def plain_value(weights: list[torch.Tensor], grads: list[torch.Tensor | None]) -> float:
    """plain from one pass's Conv2d/Linear weights and gradients."""
    return finite_or_nan(sum(float((w * g).sum()) for w, g in zip(weights, grads) if g is not None))


@register("grasp")
def grasp(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """GraSP (Wang et al. 2020) as NASLib: g = dL/dw (first pass), Hg by differentiating
    sum(g.detach() * dL/dw) (second pass, create_graph), score sum(-w * Hg) over Conv2d/Linear
    weights; temperature 1, one iteration, one batch, BatchNorm in training mode."""
    net = working_copy(model)
    x, y = to_device(net, inputs, targets)
    loss = loss_or_default(loss_fn)
    weights = [m.weight for m in weight_layers(net)]
    g = torch.autograd.grad(loss(net(x), y), weights, allow_unused=True)
    return grasp_value(net, x, y, loss, weights, list(g))


def grasp_value(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossFn, weights: list[torch.Tensor],
                g: list[torch.Tensor | None]) -> float:
    """GraSP's second part, given the first pass's gradients ``g`` of ``weights`` (shared with
    :mod:`eznas.proxies.passes`): Hg from a create_graph pass, score sum(-w * Hg). Leaves the
    weights' ``.grad`` holding Hg."""
    gf = torch.autograd.grad(loss(net(x), y), weights, create_graph=True, allow_unused=True)
    z = sum((a.detach() * b).sum() for a, b in zip(g, gf) if a is not None and b is not None)
    if not isinstance(z, torch.Tensor) or not z.requires_grad:
        return 0.0
    net.zero_grad()
    z.backward()
    return finite_or_nan(sum(float((-w.detach() * w.grad).sum()) for w in weights if w.grad is not None))


def fisher_hooks(layers: list[nn.Module], fisher: dict[int, torch.Tensor]) -> list:
    """Forward hooks that attach a gradient hook to each layer output: per channel
    0.5 * mean_n (sum_spatial act * grad)^2, accumulated in ``fisher``."""

    def make(i: int):
        def fwd(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            act = out.detach()

            def grad_hook(grad: torch.Tensor) -> None:
                g_nk = (act * grad).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * grad
                val = g_nk.pow(2).mean(0).mul(0.5)
                fisher[i] = fisher[i] + val if i in fisher else val

            if out.requires_grad:
                out.register_hook(grad_hook)

        return fwd

    return [m.register_forward_hook(make(i)) for i, m in enumerate(layers)]


@register("fisher")
def fisher(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """Fisher (Turner et al. 2020, as NASLib): for each Conv2d/Linear output channel k,
    F_k = 0.5 * mean_n (sum_spatial a * dL/da)^2; each F_k is broadcast to the channel's weights
    (times prod(weight.shape[1:])) and summed. One batch, BatchNorm in training mode."""
    net = working_copy(model)
    x, y = to_device(net, inputs, targets)
    layers = weight_layers(net)
    values: dict[int, torch.Tensor] = {}
    handles = fisher_hooks(layers, values)
    try:
        backward_loss(net, x, y, loss_or_default(loss_fn))
    finally:
        for h in handles:
            h.remove()
    return fisher_value(layers, values)


def fisher_value(layers: list[nn.Module], values: dict[int, torch.Tensor]) -> float:
    """Fisher from the per-channel values :func:`fisher_hooks` accumulated during one backward pass."""
    total = sum(float(values[i].abs().sum()) * int(np.prod(m.weight.shape[1:]))
                for i, m in enumerate(layers) if i in values)
    return finite_or_nan(total)


@register("zico")
def zico(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
         splits: int = 2) -> float:
    """ZiCo (Li et al., ICLR 2023): the batch is split into ``splits`` (default 2, the paper's
    batch count) sub-batches, one backward each (BatchNorm in training mode); for every weight,
    mean |g| / std(g) across sub-batches (population std, weights with zero std skipped); score
    sum over Conv2d/Linear layers of log(sum over the layer's weights); layers whose sum is 0 are
    skipped, as in the authors' code."""
    net = working_copy(model)
    x, y = to_device(net, inputs, targets)
    loss = loss_or_default(loss_fn)
    layers = weight_layers(net)
    per_layer: list[list[torch.Tensor]] = [[] for _ in layers]
    for xs, ys in sub_batches(x, y, max(2, splits)):
        net.zero_grad(set_to_none=True)
        backward_loss(net, xs, ys, loss)
        for i, m in enumerate(layers):
            g = m.weight.grad
            per_layer[i].append(torch.zeros_like(m.weight).flatten() if g is None else g.detach().flatten().double())
    total = 0.0
    for grads in per_layer:
        g = torch.stack(grads)
        std, mean_abs = g.std(0, unbiased=False), g.abs().mean(0)
        nz = std != 0
        s = float((mean_abs[nz] / std[nz]).sum())
        if s > 0:
            total += math.log(s)
    return finite_or_nan(total)
