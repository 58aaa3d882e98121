"""Activation- and Jacobian-based proxies: jacov, nwot, epe_nas, zen.

All run on a deep copy in training mode (BatchNorm with batch statistics), one forward pass
over the whole batch, as NASLib's measures for NAS-Bench-Suite-Zero.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from eznas.proxies.registry import LossFn, register
from eznas.proxies.common import finite_or_nan, gaussian_init, to_device, working_copy

_K = 1e-5


def input_jacobian(model: nn.Module, inputs: torch.Tensor) -> tuple[np.ndarray, int]:
    """Rows d(sum of outputs)/d(input) per sample, flattened, as float64 numpy; and the output width."""
    net = working_copy(model)
    x = inputs.to(next(net.parameters()).device).detach().clone().requires_grad_(True)
    out = net(x)
    out.backward(torch.ones_like(out))
    return x.grad.detach().reshape(x.shape[0], -1).cpu().double().numpy(), int(out.shape[-1])


@register("jacov")
def jacov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """Jacobian covariance (Mellor et al. 2020 v1, NASLib's version): C = corrcoef of the
    per-sample input Jacobians of the summed output; score -sum_i (log(v_i + 1e-5) + 1/(v_i + 1e-5))
    over C's eigenvalues v (maximum -batch size). NaN when C is undefined."""
    return jacov_value(input_jacobian(model, inputs)[0])


def jacov_value(jac: np.ndarray) -> float:
    """jacov from the per-sample input Jacobians of :func:`input_jacobian`."""
    with np.errstate(all="ignore"):
        corrs = np.corrcoef(jac)
    if not np.isfinite(corrs).all():
        return math.nan
    v = np.linalg.eigvalsh(corrs)
    return finite_or_nan(-float(np.sum(np.log(v + _K) + 1.0 / (v + _K))))


def _relu_modules(model: nn.Module) -> list[nn.Module]:
    """Activation modules of the ReLU family from torch.nn (NASLib hooks types named ``*ReLU*``
    outside its own package; blocks such as ReLUConvBN are not activations)."""
    return [m for m in model.modules() if type(m).__module__.startswith("torch.nn") and "ReLU" in type(m).__name__]


@register("nwot")
def nwot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """NASWOT (Mellor et al. 2021, v2): binary codes c = [input of every ReLU > 0]; kernel
    K = sum over ReLUs of c c^T + (1 - c)(1 - c)^T (batch x batch); score log|det K|.
    One batch, BatchNorm in training mode."""
    net = working_copy(model)
    x, _ = to_device(net, inputs, targets)
    K, handles = nwot_hooks(net, x.shape[0])
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return nwot_value(K)


def nwot_hooks(net: nn.Module, n: int) -> tuple[torch.Tensor, list]:
    """The NASWOT kernel (n x n, float64, zero) and the forward hooks on ``net``'s ReLUs that add
    every forward pass's binary codes to it (shared with :mod:`eznas.proxies.passes`)."""
    K = torch.zeros((n, n), dtype=torch.float64)

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        c = (inp[0].detach().reshape(n, -1) > 0).float()
        K.add_((c @ c.t() + (1.0 - c) @ (1.0 - c).t()).double().cpu())

    return K, [m.register_forward_hook(hook) for m in _relu_modules(net)]


def nwot_value(K: torch.Tensor) -> float:
    """log|det K| of the NASWOT kernel."""
    _, logdet = np.linalg.slogdet(K.numpy())
    return finite_or_nan(float(logdet))


def _class_score(rows: np.ndarray, n_classes: int) -> float | None:
    """sum log(|corrcoef| + 1e-5) of one class's Jacobian rows (divided by the row count for more
    than 100 classes); None where EPE-NAS's code skips the class."""
    if rows.shape[0] == 1:
        # corrcoef of one row is the scalar 1; the authors' len() of it fails for > 100 classes
        return None if n_classes > 100 else float(np.log(1.0 + _K))
    with np.errstate(all="ignore"):
        corrs = np.corrcoef(rows)
    s = float(np.sum(np.log(np.abs(corrs) + _K)))
    return s / len(corrs) if n_classes > 100 else s


@register("epe_nas")
def epe_nas(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None) -> float:
    """EPE-NAS (Lopes et al. 2021), NASLib's copy of the authors' code: per target class, the
    correlation matrix of the input Jacobians of the summed output; s_c = sum log(|corr| + 1e-5).
    Score sum_c |s_c| for <= 100 outputs, else s_c divided by the class's sample count and
    score sum_{c,c'} |s_c - s_c'| / classes seen. Targets must be class labels; NaN otherwise."""
    jac, n_classes = input_jacobian(model, inputs)
    return epe_nas_value(jac, n_classes, targets)


def epe_nas_value(jac: np.ndarray, n_classes: int, targets: torch.Tensor) -> float:
    """EPE-NAS from the input Jacobians and output width of :func:`input_jacobian`."""
    labels = targets.detach().cpu().numpy()
    if labels.ndim != 1 or labels.shape[0] != jac.shape[0]:
        return math.nan
    per_class = {}
    for c in dict.fromkeys(labels.tolist()):
        s = _class_score(jac[labels == c], n_classes)
        if s is not None:
            per_class[c] = s
    vals = np.array(list(per_class.values()), dtype=np.float64)
    if n_classes <= 100:
        return finite_or_nan(float(np.abs(vals).sum()))
    if vals.size == 0:
        return 0.0
    return finite_or_nan(float(np.abs(vals[:, None] - vals[None, :]).sum() / vals.size))


def _pre_pool_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map entering the last global (adaptive) average pooling, or the output."""
    pools = [m for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        return net(x)
    seen: list[torch.Tensor] = []
    handle = pools[-1].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    try:
        out = net(x)
    finally:
        handle.remove()
    return seen[-1] if seen else out


@register("zen")
def zen(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
        mixup_gamma: float = 1e-2, seed: int = 0) -> float:
    """Zen-score (Lin et al. 2021), NASLib's version: Gaussian re-initialisation, Gaussian inputs
    x and x + 0.01 * eps (the data are not used, only their shape), features f before global
    average pooling, score log(mean_n sum |f(x) - f(x')|) + sum over BatchNorm2d of
    log sqrt(mean running_var) after those two training-mode passes. One repeat; the random
    draws use ``seed`` without touching the global RNG."""
    net = working_copy(model)
    dev = next(net.parameters()).device
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gaussian_init(net)
        x = torch.randn(inputs.shape).to(dev)
        mix = x + mixup_gamma * torch.randn(inputs.shape).to(dev)
        diff = (_pre_pool_features(net, x) - _pre_pool_features(net, mix)).abs()
        nas = diff.reshape(diff.shape[0], -1).sum(1).mean()
        log_bn = sum(float(torch.log(torch.sqrt(m.running_var.mean()))) for m in net.modules()
                     if isinstance(m, nn.BatchNorm2d) and m.running_var is not None)
    return finite_or_nan(float(torch.log(nas)) + log_bn)
