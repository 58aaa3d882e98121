"""Built-in *hybrid* proxies: a hybrid expression (:mod:`eznas.hybrid_expr`) over per-net proxy
scores, shipped as package data (``eznas/builtin_proxies/<name>.json`` with ``"primitive_set":
"hybrid"``) and computed at scoring time with eznas's own implementations.

The JSON's ``settings.terminals`` says how each terminal is computed on a model:

- ``{"proxy": NAME}``: the eznas baseline ``eznas.proxies.get_proxy(NAME)``;
- ``{"builtin": NAME}``: the built-in evolved proxy NAME (e.g. ``eznas-nb201``);
- ``{"program": EXPR, "primitive_set": SET, "settings": {...}}``: an evolved program with the
  statistics settings it was evolved with (the format of a built-in proxy's ``settings``).

    proxy = eznas.load_proxy("eznas-nb301")
    score = proxy(model, inputs, targets, loss_fn=None)
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from torch import nn

from eznas.errors import EznasError
from eznas.hybrid_expr import Expression, parse

KIND = "hybrid"


def _terminal_fn(name: str, spec: Any, where: str) -> Callable[..., float]:
    if not isinstance(spec, Mapping) or len(spec) < 1:
        raise EznasError(f"{where}: terminal {name!r} needs a JSON object saying how it is computed")
    if "proxy" in spec:
        from eznas.proxies import get_proxy

        return get_proxy(str(spec["proxy"]))
    if "builtin" in spec:
        from eznas import builtin_proxies

        return builtin_proxies.load(str(spec["builtin"]))
    if "program" in spec:
        from eznas import program
        from eznas import simplify as simp
        from eznas.export.loading import Proxy, ProxySettings

        try:
            expr = program.parse_expression(str(spec["program"]),
                                            program.load_primitive_set(str(spec.get("primitive_set", "eznas"))))
        except EznasError as e:
            raise EznasError(f"{where}: terminal {name!r}: {e}") from None
        settings = ProxySettings.from_json(dict(spec.get("settings") or {}), f"{where} terminal {name}")
        return Proxy(name, simp.simplify(expr), settings, raw=str(spec["program"]), source=where)
    raise EznasError(f"{where}: terminal {name!r} must give 'proxy', 'builtin' or 'program'")


class HybridProxy:
    """``proxy(model, inputs, targets, loss_fn=None) -> float``: every terminal the expression uses
    computed on the model (eznas implementations), then combined by the expression (terminals
    signed-log transformed first, see :mod:`eznas.hybrid_expr`)."""

    def __init__(self, name: str, expression: str, terminals: Mapping[str, Any]) -> None:
        where = f"built-in proxy {name}"
        if not isinstance(terminals, Mapping):
            raise EznasError(f"{where}: settings.terminals must be a JSON object")
        self.name = name
        try:
            self.expression: Expression = parse(expression, list(terminals))
        except EznasError as e:
            raise EznasError(f"{where}: {e}") from None
        self.raw = expression
        self.terminal_specs = {t: terminals[t] for t in self.expression.terminals}
        self._fns: dict[str, Callable[..., float]] = {}
        self._where = where
        blob = json.dumps({"expression": str(self.expression), "terminals": self.terminal_specs}, sort_keys=True)
        #: what its scores depend on (score caches key on it)
        self.identity = "hybrid:" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _fn(self, name: str) -> Callable[..., float]:
        if name not in self._fns:
            self._fns[name] = _terminal_fn(name, self.terminal_specs[name], self._where)
        return self._fns[name]

    def terminals(self, model: nn.Module, inputs: Any, targets: Any, loss_fn: Any = None) -> dict[str, float]:
        """Each terminal's raw value on ``model`` (before the signed-log transform). Evolved programs
        with equal statistics settings share one recording (it draws only from its own seeded
        generators, so the values equal separate recordings and the other terminals' RNG is untouched);
        baseline terminals share their passes (:mod:`eznas.proxies.passes`: the three AZ-NAS
        components one forward, snip / fisher / nwot one backward), with the one-by-one values. A
        baseline that fails raises, as called alone."""
        from dataclasses import asdict

        from eznas.export.loading import Proxy, call_proxy
        from eznas.proxies.passes import score_baselines

        out: dict[str, float] = {}
        recorded: dict[str, Any] = {}  # statistics settings -> the recording
        baselines = [str(spec["proxy"]) for spec in self.terminal_specs.values() if "proxy" in spec]
        shared = score_baselines(baselines, model, inputs, targets, loss_fn) if len(baselines) > 1 else {}
        for t, spec in self.terminal_specs.items():
            if "proxy" in spec and spec["proxy"] in shared:
                outcome = shared[spec["proxy"]]
                if outcome.error is not None:
                    raise RuntimeError(f"{self.name}: terminal {t!r} failed: {outcome.error}")
                out[t] = outcome.score
                continue
            fn = self._fn(t)
            if isinstance(fn, Proxy):
                key = json.dumps(asdict(fn.settings), sort_keys=True)
                if key not in recorded:
                    recorded[key] = fn.statistics(model, inputs, targets, loss_fn)
                out[t] = fn.score_statistics(recorded[key])
            else:
                out[t] = call_proxy(fn, model, inputs, targets, loss_fn=loss_fn)
        return out

    def __call__(self, model: nn.Module, inputs: Any, targets: Any, loss_fn: Any = None) -> float:
        return float(np.asarray(self.expression(self.terminals(model, inputs, targets, loss_fn))))


def describe(b: Any) -> str:
    """Docstring of a built-in hybrid proxy from its :class:`~eznas.builtin_proxies.BuiltinProxy`."""
    prov = b.provenance
    lines = [f"{b.name}: {b.summary}", "",
             "Built-in hybrid proxy (eznas package data): an evolved expression over per-net proxy scores.",
             "``proxy(model, inputs, targets, loss_fn=None) -> float``", "",
             "Expression (terminals are per-net scores, each transformed by sign(x)*log1p(|x|) first):",
             f"    {b.expression}", "", "Terminals (computed at scoring time by eznas):"]
    for t in parse(b.expression).terminals:
        spec = b.settings.get("terminals", {}).get(t, {})
        how = (f"eznas.proxies.get_proxy({spec['proxy']!r})" if "proxy" in spec else
               f"built-in proxy {spec['builtin']}" if "builtin" in spec else
               f"evolved program {spec.get('program')}" if "program" in spec else "?")
        lines.append(f"    {t:18s} {how}")
    if prov.get("note"):
        lines += ["", *prov["note"].split("\n")]
    lines += ["", "Provenance",
              f"    setting           {prov.get('setting')} (experiments/hybrid_search.py)",
              f"    tasks             {', '.join(prov.get('tasks', []))}",
              f"    GP seed           {prov.get('gp_seed')}",
              f"    chosen by         {prov.get('chosen_by')}",
              f"    validation        {prov.get('fitness')}: {prov.get('validate'):.4f}"
              if isinstance(prov.get("validate"), float) else "    validation        -",
              "", "Test figures (test nets of the setting, never used for the choice)"]
    for task, r in b.test.items():
        base = r.get("best_baseline")
        extra = f"; best baseline {base[0]} {base[1]:.3f}" if isinstance(base, list) and len(base) == 2 else ""
        lines.append(f"    {task:24s} Spearman {r.get('spearman'):.3f}, Kendall {r.get('kendall'):.3f} "
                     f"({r.get('nets')} nets{extra})")
    lines += ["", f"Regenerate: {prov.get('regenerate', 'python experiments/hybrid_search.py --ship')}"]
    return "\n".join(lines)


def load(b: Any) -> HybridProxy:
    proxy = HybridProxy(b.name, b.expression, b.settings.get("terminals"))
    proxy.__doc__ = describe(b)
    return proxy


__all__ = ["KIND", "HybridProxy", "load", "describe"]
