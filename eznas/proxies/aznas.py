"""AZ-NAS components (Lee & Ham, CVPR 2024; official code cvlab-yonsei/AZ-NAS, ``NB201/``).

AZ-NAS scores a net by four components, each RANKED over the evaluated nets and combined as
sum_k log(rank_k / N) (see :mod:`eznas.proxies.sets`, ``az_nas``). The components, as the official
``NB201/ZeroShotProxy/compute_az_nas_score.py`` computes them on the features f_0..f_L of
``extract_cell_features`` (the stem output and every cell's output, the residual reduction
blocks included; 17 features for NB201's 5 cells per stage):

- expressivity: sum over features of the entropy of the normalised eigenvalues of the channel
  covariance (over batch x positions) -- the isotropy of the feature space;
- progressivity: min over consecutive features of the increase of that entropy;
- trainability: mean over consecutive pairs of 2 - s - 1/s, s = the largest singular value of
  the (C_in x C_out) matrix E[g_in g_out^T] of the backpropagated Rademacher gradients (the
  input gradient pixel-unshuffled to the output's resolution), -inf when the pair passes the
  gradient unchanged;
- complexity: FLOPs (the official NB201 run reads them from the benchmark API).

Setting as the official NB201 run: a Gaussian noise batch (the data are not used, only their
shape), Kaiming-normal fan-in re-initialisation (BatchNorm weight 1, bias 0), training mode.
A NaN component becomes -inf (official). A model without ``stem`` and ``cells`` (NB101, a user's
model) uses the 4-D outputs of its blocks: its direct children, with containers (``Sequential``,
``ModuleList``, ``ModuleDict``) opened down to the modules they hold -- for NB101 the stem, the
nine cells and the two max-pool reductions, as the official features are NB201's stem, cells and
reduction blocks.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas.proxies.registry import LossFn, register
from eznas.proxies.common import device_of, drawn_on_cpu, working_copy
from eznas.proxies.size import flops

AZ_COMPONENTS = ("expressivity", "progressivity", "trainability", "complexity")


def kaiming_fanin_init(net: nn.Module) -> None:
    """The official AZ-NAS init: Kaiming-normal (fan-in, ReLU gain) conv / linear weights, zero
    biases, affine BatchNorm / GroupNorm weight 1 bias 0. Draws from the global CPU RNG (also for a
    net on CUDA, so both devices get the same weights)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                drawn_on_cpu(m.weight, lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _blocks(module: nn.Module) -> list[nn.Module]:
    """``module``'s children, containers opened recursively down to the modules they hold."""
    out: list[nn.Module] = []
    for child in module.children():
        out.extend(_blocks(child) if isinstance(child, CONTAINERS) else [child])
    return out


def _feature_modules(net: nn.Module) -> tuple[list[nn.Module], bool]:
    """(modules whose outputs are the features, whether they are the official stem + cells)."""
    stem, cells = getattr(net, "stem", None), getattr(net, "cells", None)
    if isinstance(stem, nn.Module) and isinstance(cells, (nn.Sequential, nn.ModuleList)) and len(cells) > 0:
        return [stem, *cells], True
    return _blocks(net), False


def stage_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The features (with their autograd graph) of one forward pass of ``net`` on ``x``, in the
    order computed: stem + every cell output when the model has ``stem`` and ``cells``, else the
    4-D output of every block (:func:`_blocks`)."""
    modules, official = _feature_modules(net)
    seen: list[torch.Tensor] = []

    def hook(m: nn.Module, inp: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor) and (official or out.dim() == 4):
            seen.append(out)

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def feature_entropy(feat: torch.Tensor) -> float:
    """Entropy of the normalised eigenvalues of the channel covariance of ``feat`` (b, c, ...)
    over batch and positions (official expressivity of one feature). Eigenvalues in float64,
    rounding negatives clamped to 0 (float32 ``eigvalsh`` in the official code can give a NaN
    there); NaN when the covariance is zero."""
    c = feat.shape[1]
    x = feat.detach().double().movedim(1, -1).reshape(-1, c)
    x = x - x.mean(0, keepdim=True)
    s = torch.linalg.eigvalsh(x.t() @ x / x.shape[0]).clamp_min(0.0)
    p = s / s.sum()
    return float(-(p * torch.log(p + 1e-8)).sum())


def _rademacher(shape: torch.Size, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (torch.randint(0, 2, shape, generator=gen, dtype=torch.int64) * 2 - 1).to(like.device, like.dtype)


def pair_trainability(f_in: torch.Tensor, f_out: torch.Tensor, gen: torch.Generator) -> float:
    """2 - s - 1/(s + 1e-6) for one consecutive pair (official): s = sigma_max of
    E_positions[g_in g_out^T] with g_out Rademacher and g_in its backpropagation to ``f_in``;
    -inf when g_in == g_out (the pair is the identity for gradients); NaN when the resolutions
    do not divide."""
    g_out = _rademacher(f_out.shape, gen, f_out)
    (g_in,) = torch.autograd.grad(f_out, f_in, grad_outputs=g_out, retain_graph=True, allow_unused=True)
    if g_in is None:  # f_out does not depend on f_in: the gradient is zero
        g_in = torch.zeros_like(f_in)
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return -math.inf
    if g_out.dim() == 4 and g_in.dim() == 4 and g_in.shape[2:] != g_out.shape[2:]:
        stride = g_in.shape[2] // g_out.shape[2]
        if stride < 1 or g_in.shape[2] != stride * g_out.shape[2] or g_in.shape[3] != stride * g_out.shape[3]:
            return math.nan
        g_in = F.pixel_unshuffle(g_in, stride)
    co, ci = g_out.shape[1], g_in.shape[1]
    go = g_out.detach().double().movedim(1, -1).reshape(-1, co)
    gi = g_in.detach().double().movedim(1, -1).reshape(-1, ci)
    if go.shape[0] != gi.shape[0]:
        return math.nan
    s = float(torch.linalg.svdvals(gi.t() @ go / go.shape[0]).max())
    return -s - 1.0 / (s + 1e-6) + 2.0


def _or_neg_inf(v: float) -> float:
    return -math.inf if math.isnan(v) else float(v)


def az_components(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
                  seed: int = 0, complexity: bool = True) -> dict[str, float]:
    """The four AZ-NAS components of one net (see the module docstring): one forward on a seeded
    Gaussian batch shaped like ``inputs`` after a seeded Kaiming fan-in re-init of a deep copy,
    L - 1 gradient products, and the ``flops`` baseline as complexity (``complexity=False``
    skips it). Expressivity / progressivity / trainability NaN (degenerate features, e.g.
    all-zero cells) become -inf, as the official code returns."""
    net = working_copy(model)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        kaiming_fanin_init(net)
    x = torch.randn(inputs.shape, generator=gen).to(device_of(net))
    feats = stage_features(net, x)
    out: dict[str, float] = {}
    if len(feats) == 0:
        out.update(expressivity=math.nan, progressivity=math.nan, trainability=math.nan)
    else:
        ent = np.array([feature_entropy(f) for f in feats])
        out["expressivity"] = _or_neg_inf(float(ent.sum()))
        out["progressivity"] = _or_neg_inf(float(np.min(np.diff(ent)))) if len(ent) > 1 else math.nan
        pairs = [pair_trainability(feats[i - 1], feats[i], gen) for i in reversed(range(1, len(feats)))]
        out["trainability"] = _or_neg_inf(float(np.mean(pairs))) if pairs else math.nan
    if complexity:
        out["complexity"] = flops(model, inputs, targets)
    return out


@register("az_expressivity")
def az_expressivity(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
                    seed: int = 0) -> float:
    """AZ-NAS expressivity (Lee & Ham, CVPR 2024): sum over the stem and cell outputs of the
    entropy of the normalised eigenvalues of the channel covariance, on a seeded Gaussian batch
    after a seeded Kaiming fan-in re-init, training mode (official NB201 setting); -inf when a
    feature is constant. One component of the set-level ``az_nas``."""
    return az_components(model, inputs, targets, seed=seed, complexity=False)["expressivity"]


@register("az_progressivity")
def az_progressivity(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
                     seed: int = 0) -> float:
    """AZ-NAS progressivity: the minimum over consecutive features (stem, cells) of the increase of
    the expressivity entropy (same pass as ``az_expressivity``); NaN with fewer than 2 features."""
    return az_components(model, inputs, targets, seed=seed, complexity=False)["progressivity"]


@register("az_trainability")
def az_trainability(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
                    seed: int = 0) -> float:
    """AZ-NAS trainability: mean over consecutive features of 2 - s - 1/s, s the spectral norm of
    the gradient cross-moment between a block's output (Rademacher) and input (backpropagated,
    pixel-unshuffled to the output's resolution); 0 at s = 1 (gradient norm preserved), -inf for
    an identity block; same seeded noise batch and init as ``az_expressivity``."""
    return az_components(model, inputs, targets, seed=seed, complexity=False)["trainability"]


@register("az_complexity")
def az_complexity(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  loss_fn: LossFn | None = None) -> float:
    """AZ-NAS complexity: FLOPs in millions (the ``flops`` baseline's torchstat convention; the
    official NB201 run takes the benchmark API's FLOPs, a different count of the same cost)."""
    return flops(model, inputs, targets)
