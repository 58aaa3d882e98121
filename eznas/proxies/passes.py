"""Shared passes: baselines that need the same forward / backward pass of a net are computed
together, one pass per net per kind, with the same scores as computing them one by one.

Kinds (each a :class:`SharedPass`; its members are registered baseline names):

- ``grad``: one deep copy in training mode, one forward + backward of the loss on the whole
  batch: ``snip``, ``grad_norm``, ``plain`` (weights and their gradients), ``fisher`` (its hooks
  on the Conv2d / Linear outputs), ``nwot`` (its hooks on the ReLU inputs of the same forward) and
  ``grasp`` (that gradient is its first pass; its create_graph Hessian pass follows on the same copy);
- ``jacobian``: one input Jacobian of the summed output: ``jacov``, ``epe_nas``;
- ``az``: one AZ-NAS forward on the seeded noise batch and its gradient products:
  ``az_expressivity``, ``az_progressivity``, ``az_trainability``;
- ``flops``: one batch-of-one eval-mode count: ``flops``, ``az_complexity`` (the same number);
- ``swap``: the seeded N(0, 1) re-initialisations and activation-pattern counts: ``swap``,
  ``reg_swap`` (the count times the size factor).

Every other baseline (``synflow``: no BatchNorm and float64; ``zico``: its own sub-batch passes; ``zen``, ``meco``, ``params``, ``l2_norm``) runs alone.
The shared code paths are the proxies' own (:mod:`eznas.proxies.gradient` etc. expose their
finishing steps), and none of them draws from the global RNG, so the scores are identical to the
one-by-one ones (``tests/test_proxies_passes.py`` checks it on real NB201 nets).

A shared pass's wall time is split equally among the members computed in it, so the times of a
net's proxies add up to what scoring it cost.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eznas.errors import EznasError
from eznas.proxies.registry import LossFn, get_proxy
from eznas.proxies.activation import epe_nas_value, input_jacobian, jacov_value, nwot_hooks, nwot_value
from eznas.proxies.aznas import az_components
from eznas.proxies.common import backward_loss, loss_or_default, to_device, weight_layers, working_copy
from eznas.proxies.gradient import (fisher_hooks, fisher_value, grad_norm_value, grasp_value, plain_value,
                                    snip_value)
from eznas.proxies.size import flops
from eznas.proxies.swap import regular_factor, swap_count

PassFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, "LossFn | None", tuple[str, ...]], dict[str, float]]


@dataclass(frozen=True)
class SharedPass:
    """One kind of pass: the baselines it yields and ``run(model, inputs, targets, loss_fn,
    wanted) -> {name: score}`` for the requested members ``wanted``."""

    kind: str
    members: tuple[str, ...]
    run: PassFn


@dataclass(frozen=True)
class Outcome:
    """One baseline's score on one net, its share of the seconds, and why it failed (or None)."""

    score: float
    seconds: float
    error: str | None = None


def _grad_pass(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None,
               wanted: tuple[str, ...]) -> dict[str, float]:
    net = working_copy(model)
    x, y = to_device(net, inputs, targets)
    layers = weight_layers(net)
    fisher_vals: dict[int, torch.Tensor] = {}
    handles = fisher_hooks(layers, fisher_vals) if "fisher" in wanted else []
    kernel = None
    if "nwot" in wanted:
        kernel, more = nwot_hooks(net, x.shape[0])
        handles += more
    try:
        backward_loss(net, x, y, loss_or_default(loss_fn))
    finally:
        for h in handles:
            h.remove()
    weights, grads = [m.weight.detach() for m in layers], [m.weight.grad for m in layers]
    finish: dict[str, Callable[[], float]] = {
        "snip": lambda: snip_value(weights, grads), "grad_norm": lambda: grad_norm_value(grads),
        "plain": lambda: plain_value(weights, grads), "fisher": lambda: fisher_value(layers, fisher_vals),
        "nwot": lambda: nwot_value(kernel),  # type: ignore[arg-type]
        # last: its Hessian pass replaces the weights' .grad (the list ``grads`` keeps the first ones)
        "grasp": lambda: grasp_value(net, x, y, loss_or_default(loss_fn), [m.weight for m in layers], grads)}
    return {name: finish[name]() for name in sorted(wanted, key=lambda n: n == "grasp")}


def _jacobian_pass(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None,
                   wanted: tuple[str, ...]) -> dict[str, float]:
    jac, n_classes = input_jacobian(model, inputs)
    finish = {"jacov": lambda: jacov_value(jac), "epe_nas": lambda: epe_nas_value(jac, n_classes, targets)}
    return {name: finish[name]() for name in wanted}


def _az_pass(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None,
             wanted: tuple[str, ...]) -> dict[str, float]:
    comps = az_components(model, inputs, targets, complexity=False)
    return {name: comps[name.removeprefix("az_")] for name in wanted}


def _flops_pass(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None,
                wanted: tuple[str, ...]) -> dict[str, float]:
    value = flops(model, inputs, targets)
    return {name: value for name in wanted}


def _swap_pass(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None,
               wanted: tuple[str, ...]) -> dict[str, float]:
    count = swap_count(model, inputs, targets)
    return {name: count * regular_factor(model) if name == "reg_swap" else count for name in wanted}


PASSES: tuple[SharedPass, ...] = (
    SharedPass("grad", ("snip", "grad_norm", "plain", "fisher", "nwot", "grasp"), _grad_pass),
    SharedPass("jacobian", ("jacov", "epe_nas"), _jacobian_pass),
    SharedPass("az", ("az_expressivity", "az_progressivity", "az_trainability"), _az_pass),
    SharedPass("flops", ("flops", "az_complexity"), _flops_pass),
    SharedPass("swap", ("swap", "reg_swap"), _swap_pass),
)
_BY_MEMBER = {m: p for p in PASSES for m in p.members}


def pass_of(name: str) -> SharedPass | None:
    """The shared pass that computes the baseline ``name``, or None if it runs alone."""
    return _BY_MEMBER.get(name)


def plan(names: Sequence[str]) -> list[tuple[SharedPass | None, tuple[str, ...]]]:
    """The baselines ``names`` grouped into passes, in order of first appearance: (pass, members
    wanted) for shared ones, (None, (name,)) for each baseline that runs alone."""
    groups: dict[str, list[str]] = {}
    out: list[tuple[SharedPass | None, list[str]]] = []
    for name in dict.fromkeys(names):
        sp = pass_of(name)
        if sp is None:
            out.append((None, [name]))
        elif sp.kind in groups:
            groups[sp.kind].append(name)
        else:
            groups[sp.kind] = [name]
            out.append((sp, groups[sp.kind]))
    return [(sp, tuple(members)) for sp, members in out]


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def score_baselines(names: Sequence[str], model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    loss_fn: LossFn | None = None, shared: bool = True) -> dict[str, Outcome]:
    """Every baseline of ``names`` on ``model``, shared passes computed once (``shared=False``:
    each baseline alone, for comparison). A baseline that fails scores NaN with its error (a
    failed shared pass fails each of its members); an :class:`EznasError` propagates."""
    for name in names:
        get_proxy(name)  # unknown or set-level names: one clear error before any work
    groups = plan(names) if shared else [(None, (n,)) for n in dict.fromkeys(names)]
    out: dict[str, Outcome] = {}
    for sp, members in groups:
        t0 = time.perf_counter()
        try:
            if sp is None:
                scores = {members[0]: float(get_proxy(members[0])(model, inputs, targets, loss_fn=loss_fn))}
            else:
                scores = sp.run(model, inputs, targets, loss_fn, members)
            err = None
        except EznasError:
            raise
        except Exception as e:  # noqa: BLE001  (a failing proxy scores NaN, reported by the caller)
            scores, err = {}, _error(e)
        share = (time.perf_counter() - t0) / len(members)
        for name in members:
            s = scores.get(name, math.nan)
            out[name] = Outcome(float(s), share, err)
    return {name: out[name] for name in dict.fromkeys(names)}


__all__ = ["SharedPass", "Outcome", "PASSES", "pass_of", "plan", "score_baselines"]
