"""Set-level proxies: scores that exist only relative to a set of nets (rank aggregations).

A per-net proxy (:func:`eznas.proxies.get_proxy`) maps one net to a number. A set-level proxy
such as AZ-NAS ranks each of its per-net *components* over the evaluated nets and combines the
ranks, so a net's score changes with the set it is scored in and one net alone has none:

    comps = [component_scores("az_nas", model, x, y) for model in models]   # per net
    scores = score_set("az_nas", comps)                                     # one per net

``score_set`` also takes the models directly (then ``inputs`` / ``targets`` are required).
A set-level name asked for as a per-net proxy, or given fewer than 2 nets, is an EznasError.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from eznas.errors import EznasError
from eznas.proxies.registry import LossFn

ComponentScores = Mapping[str, float]
Combine = Callable[[Sequence[ComponentScores]], list[float]]
ComponentsFn = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class SetProxy:
    """A set-level proxy: the per-net components it needs, how one net's components are computed
    (``components_fn(model, inputs, targets, loss_fn=None) -> {component: score}``), and
    ``combine``: the per-net component dicts of N >= 2 nets -> N scores (higher is better)."""

    name: str
    components: tuple[str, ...]
    combine: Combine
    components_fn: ComponentsFn
    proxy_prefix: str = ""  # component c is also the per-net proxy f"{proxy_prefix}{c}"


_SET_REGISTRY: dict[str, SetProxy] = {}


def register_set(name: str, components: tuple[str, ...], components_fn: ComponentsFn,
                 proxy_prefix: str = "") -> Callable[[Combine], Combine]:
    """Decorator: register ``combine`` as the set-level proxy ``name``."""

    def deco(combine: Combine) -> Combine:
        if name in _SET_REGISTRY:
            raise KeyError(f"duplicate set-level proxy name {name!r}")
        _SET_REGISTRY[name] = SetProxy(name, tuple(components), combine, components_fn, proxy_prefix)
        return combine

    return deco


def set_proxy_names() -> list[str]:
    """Names of every set-level proxy, in registration order."""
    return list(_SET_REGISTRY)


def is_set_level(name: str) -> bool:
    return name in _SET_REGISTRY


def get_set_proxy(name: str) -> SetProxy:
    if name not in _SET_REGISTRY:
        raise EznasError(f"unknown set-level proxy '{name}'; valid: {', '.join(_SET_REGISTRY)}")
    return _SET_REGISTRY[name]


def components_of(name: str) -> tuple[str, ...]:
    """The per-net component names the set-level proxy ``name`` combines."""
    return get_set_proxy(name).components


def component_proxies(name: str) -> dict[str, str]:
    """{component: the per-net proxy registered for it} of the set-level proxy ``name`` (e.g.
    ``expressivity`` -> ``az_expressivity``), so per-net scores can be cached under proxy names."""
    sp = get_set_proxy(name)
    return {c: f"{sp.proxy_prefix}{c}" for c in sp.components}


def component_scores(name: str, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     loss_fn: LossFn | None = None) -> dict[str, float]:
    """One net's component scores for the set-level proxy ``name``."""
    return dict(get_set_proxy(name).components_fn(model, inputs, targets, loss_fn=loss_fn))


def score_set(name: str, items: Sequence[ComponentScores] | Sequence[nn.Module],
              inputs: torch.Tensor | None = None, targets: torch.Tensor | None = None,
              loss_fn: LossFn | None = None) -> list[float]:
    """Scores of N >= 2 nets under the set-level proxy ``name``, in input order, from either
    their per-net component dicts or the models themselves (then with ``inputs`` / ``targets``)."""
    sp = get_set_proxy(name)
    items = list(items)
    if len(items) < 2:
        raise EznasError(f"'{name}' is a set-level proxy (it ranks nets against each other) and needs "
                         f"at least 2 nets, got {len(items)}")
    if all(isinstance(i, nn.Module) for i in items):
        if inputs is None or targets is None:
            raise EznasError(f"scoring models with '{name}' needs inputs and targets")
        comps: list[ComponentScores] = [component_scores(name, m, inputs, targets, loss_fn) for m in items]
    elif all(isinstance(i, Mapping) for i in items):
        comps = items  # type: ignore[assignment]
        for k, d in enumerate(comps):
            missing = [c for c in sp.components if c not in d]
            if missing:
                raise EznasError(f"net {k} lacks the '{name}' component(s) {', '.join(missing)}")
    else:
        raise EznasError(f"'{name}' scores a list of models or a list of component-score dicts")
    return sp.combine(comps)


def matrix_combine(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The set-level proxy ``name`` as a function of an (N nets x components) matrix, columns in
    :func:`components_of` order (what a search that scores cells one at a time holds)."""
    components = components_of(name)

    def combine(matrix: np.ndarray) -> np.ndarray:
        rows = [dict(zip(components, map(float, row))) for row in np.asarray(matrix, dtype=np.float64)]
        return np.asarray(score_set(name, rows), dtype=np.float64)

    return combine


def _log_rank_sum(comps: Sequence[ComponentScores], components: tuple[str, ...]) -> list[float]:
    """sum over components of log(rank / N), ranks ascending (1 = worst, ties averaged, NaN
    ranked with -inf below every finite value)."""
    n = len(comps)
    total = np.zeros(n)
    for c in components:
        v = np.array([float(d[c]) for d in comps], dtype=np.float64)
        v[np.isnan(v)] = -math.inf
        total += np.log(stats.rankdata(v) / n)
    return total.tolist()


def _az_components(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   loss_fn: LossFn | None = None) -> dict[str, float]:
    from eznas.proxies.aznas import az_components

    return az_components(model, inputs, targets, loss_fn)


@register_set("az_nas", ("expressivity", "progressivity", "trainability", "complexity"), _az_components,
              proxy_prefix="az_")
def az_nas(comps: Sequence[ComponentScores]) -> list[float]:
    """AZ-NAS (Lee & Ham, CVPR 2024), the official NB201 rank aggregation: each component
    (expressivity, progressivity, trainability, complexity = FLOPs; see
    :mod:`eznas.proxies.aznas`) is ranked over the N evaluated nets (scipy ``rankdata``, ties
    averaged, higher value = higher rank) and a net's score is sum_k log(rank_k / N) (<= 0, 0 for
    a net first on every component): the non-linear product of normalised ranks, which
    penalises a net poor on any one component more than a rank average would."""
    return _log_rank_sum(comps, ("expressivity", "progressivity", "trainability", "complexity"))


__all__ = ["SetProxy", "register_set", "set_proxy_names", "is_set_level", "get_set_proxy", "components_of",
           "component_proxies", "component_scores", "score_set", "az_nas"]
