"""Hand-made zero-cost proxies (the baselines evolved proxies are compared against).

Every proxy is one small function ``proxy(model, inputs, targets, loss_fn=None) -> float``,
registered by name with :func:`register` (NASLib-registry style). ``loss_fn(output, targets)``
defaults to cross-entropy; spaces with other losses pass their own. A proxy never leaves the
model changed (it works on a deep copy whenever it runs the network or touches weights), so
proxies can run one after another on the same network in any order.

Conventions follow NAS-Bench-Suite-Zero (NASLib's ``predictors/utils/pruners/measures``): the
network in training mode (BatchNorm with batch statistics) unless a docstring says otherwise,
per-layer measures over the weights of every ``Conv2d`` and ``Linear`` summed to one number.
Each function's docstring records its variant.

Set-level proxies (:mod:`eznas.proxies.sets`, e.g. ``az_nas``) rank per-net components over a
set of nets; they are not per-net proxies: :func:`get_proxy` refuses them, :func:`score_set`
scores a list of nets (or of their :func:`component_scores`), :func:`components_of` names the
components.

:func:`eznas.proxies.passes.score_baselines` scores several baselines of one net with one pass per
kind where they share it (e.g. snip, grad_norm, fisher, nwot from one forward/backward), with the
scores of running them one by one.
"""
from __future__ import annotations

from eznas.proxies.registry import LossFn, ProxyFn, compute, get_proxy, proxy_names, register

# Registration order is the order of NAS-Bench-Suite-Zero's list, then ZiCo, then the later
# proxies (MeCo, SWAP, AZ-NAS's components); set-level proxies (AZ-NAS) last.
from eznas.proxies import size as _size  # noqa: E402,F401
from eznas.proxies import gradient as _gradient  # noqa: E402,F401
from eznas.proxies import activation as _activation  # noqa: E402,F401
from eznas.proxies import meco as _meco  # noqa: E402,F401
from eznas.proxies import swap as _swap  # noqa: E402,F401
from eznas.proxies import aznas as _aznas  # noqa: E402,F401
from eznas.proxies.sets import (component_scores, components_of, get_set_proxy, is_set_level,  # noqa: E402
                                score_set, set_proxy_names)

__all__ = ["register", "get_proxy", "proxy_names", "compute", "LossFn", "ProxyFn", "get_set_proxy",
           "is_set_level", "score_set", "components_of", "component_scores", "set_proxy_names"]
