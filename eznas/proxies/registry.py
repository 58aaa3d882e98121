"""The registry of per-net proxies: :func:`register` (a decorator), :func:`get_proxy`,
:func:`proxy_names`, :func:`compute`. Proxy modules import from here; the package
``eznas.proxies`` imports them (so registers them) and re-exports this API."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from eznas.errors import EznasError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProxyFn = Callable[..., float]

_REGISTRY: dict[str, ProxyFn] = {}


def register(name: str) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator: register ``func`` as the proxy ``name``."""

    def deco(func: ProxyFn) -> ProxyFn:
        if name in _REGISTRY:
            raise KeyError(f"duplicate proxy name {name!r}")
        _REGISTRY[name] = func
        func.proxy_name = name  # type: ignore[attr-defined]
        return func

    return deco


def proxy_names() -> list[str]:
    """Names of every registered proxy, in registration order."""
    return list(_REGISTRY)


def get_proxy(name: str) -> ProxyFn:
    """The proxy function registered as ``name``; an unknown name lists the valid ones; a
    set-level name (``az_nas``) is an error: it has no per-net score (see :func:`score_set`)."""
    from eznas.proxies.sets import set_proxy_names

    if name not in _REGISTRY and name in set_proxy_names():
        raise EznasError(f"'{name}' is a set-level proxy: it ranks nets against each other and has no score "
                         f"for a single net; score at least 2 nets with eznas.proxies.score_set")
    if name not in _REGISTRY:
        raise EznasError(f"unknown proxy '{name}'; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def compute(name: str, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
            loss_fn: LossFn | None = None) -> float:
    """Score ``model`` with the proxy ``name``."""
    return float(get_proxy(name)(model, inputs, targets, loss_fn=loss_fn))
