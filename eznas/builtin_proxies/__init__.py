"""Built-in evolved proxies: the best discovered programs, shipped as package data.

Each ``eznas/builtin_proxies/<name>.json`` (written by ``experiments/ship_proxies.py`` from the
committed results) holds one program chosen on the validation split: its expression, the
primitive set it was evolved in, the statistics settings it needs (batch size, R, s, noise scale,
unit aggregation, storage type, seed), its provenance (config, GP seed, validation fitness) and
its test figures. :func:`load` parses the expression with :mod:`eznas.expression` (nothing is
evaluated as Python) and returns an :class:`eznas.export.Proxy` whose docstring tells all of that.
No run directory, no network access.

    >>> import eznas
    >>> proxy = eznas.load_proxy("eznas-nb201")
    >>> score = proxy(model, inputs, targets)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from eznas.errors import EznasError

__all__ = ["FORMAT", "BuiltinProxy", "names", "is_builtin", "read", "load", "describe"]

FORMAT = 1
PREFIX = "eznas-"
_NAME = re.compile(r"eznas-[a-z0-9][a-z0-9-]*")
_KEYS = {"format", "name", "summary", "expression", "primitive_set", "settings", "provenance", "test"}


@dataclass(frozen=True)
class BuiltinProxy:
    """The validated content of one built-in proxy's JSON file."""

    name: str
    summary: str
    expression: str  # as evolved
    primitive_set: str
    settings: dict[str, Any]
    provenance: dict[str, Any]
    test: dict[str, dict[str, Any]]


def _files() -> dict[str, Any]:
    folder = resources.files(__name__)
    return {entry.name[:-5]: entry for entry in folder.iterdir()
            if entry.name.endswith(".json") and _NAME.fullmatch(entry.name[:-5])}


def names() -> list[str]:
    """Names of the built-in evolved proxies, sorted."""
    return sorted(_files())


def is_builtin(name: str) -> bool:
    return isinstance(name, str) and name in _files()


def _unknown(name: str) -> EznasError:
    known = names()
    return EznasError(f"unknown built-in proxy {name!r}; built-in proxies: {', '.join(known) or 'none'}")


@lru_cache(maxsize=None)
def read(name: str) -> BuiltinProxy:
    """The checked content of built-in proxy ``name`` (one-line EznasError if unknown or malformed)."""
    entry = _files().get(name)
    if entry is None:
        raise _unknown(name)
    where = f"built-in proxy {name}"
    try:
        raw = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EznasError(f"{where}: its package data does not read ({type(e).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise EznasError(f"{where}: not a format-{FORMAT} description")
    missing = sorted(_KEYS - set(raw))
    if missing:
        raise EznasError(f"{where}: missing key(s) {', '.join(missing)}")
    if raw["name"] != name:
        raise EznasError(f"{where}: the file names itself {raw['name']!r}")
    for key in ("summary", "expression", "primitive_set"):
        if not isinstance(raw[key], str):
            raise EznasError(f"{where}: {key!r} must be text")
    for key in ("settings", "provenance", "test"):
        if not isinstance(raw[key], dict):
            raise EznasError(f"{where}: {key!r} must be a JSON object")
    return BuiltinProxy(name, raw["summary"], raw["expression"], raw["primitive_set"], raw["settings"],
                        raw["provenance"], raw["test"])


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def describe(name: str) -> str:
    """The docstring of built-in proxy ``name``: expression, provenance, settings and test figures."""
    from eznas import simplify as simp

    b = read(name)
    if b.primitive_set == "hybrid":  # an expression over proxy scores (eznas.hybrid_proxy)
        from eznas import hybrid_proxy

        return hybrid_proxy.describe(b)
    expr = _parse(b)
    simple = simp.simplify(expr)
    st, prov = b.settings, b.provenance
    lines = [f"{b.name}: {b.summary}", "",
             "Built-in evolved zero-cost proxy (eznas package data; no run directory, no network).",
             "``proxy(model, inputs, targets, loss_fn=None, noise=None, perturbed=None) -> float``", "",
             "Expression (as evolved):", f"    {b.expression}"]
    if simp.to_infix(simple) != b.expression:
        lines += ["Simplified (provably equivalent; what is computed):", f"    {simp.to_infix(simple)}"]
    lines += ["LaTeX:", f"    {simp.to_latex(simple)}", "",
              "Provenance",
              f"    config            {prov.get('config')} "
              f"(config seed {st.get('seed')}: splits, networks, statistics)",
              f"    tasks             {', '.join(prov.get('tasks', []))}",
              f"    GP seed           {prov.get('gp_seed')} (run {prov.get('run_dir')})",
              f"    primitive set     {b.primitive_set}",
              f"    chosen by         {prov.get('chosen_by')}"]
    for cand in prov.get("candidates", []):
        mark = "  <- shipped" if cand.get("gp_seed") == prov.get("gp_seed") else ""
        lines.append(f"                      GP seed {cand.get('gp_seed')}: "
                     f"validation {_fmt(cand.get('validate'))}{mark}")
    lines.append(f"    validation        {prov.get('fitness')}: {_fmt(prov.get('validate'))} "
                 f"({prov.get('validate_nets_per_task')} nets per task)")
    for task, v in (prov.get("validate_per_task") or {}).items():
        lines.append(f"                      {task}: {_fmt(v)}")
    lines += ["", "Test figures (test split of the config, never used for the choice)"]
    for task, r in b.test.items():
        base = r.get("best_baseline")
        extra = f"; best baseline {base[0]} {_fmt(base[1], 3)}" if isinstance(base, list) and len(base) == 2 else ""
        lines.append(f"    {task:24s} Spearman {_fmt(r.get('spearman'), 3)}, Kendall {_fmt(r.get('kendall'), 3)} "
                     f"({r.get('nets')} nets{extra})")
    if prov.get("test_source"):
        lines.append(f"    source: {prov['test_source']}")
    lines += ["", "Settings (the search's statistics)",
              f"    batch size {st.get('batch_size')}, R = {st.get('R')} blocks of "
              f"s x s = {st.get('s')} x {st.get('s')}, "
              f"noise scale {st.get('noise_scale')}, seed {st.get('seed')}",
              f"    unit aggregation {st.get('unit_aggregate')}; statistics stored as {st.get('cache_dtype')}",
              "", f"Regenerate: {prov.get('regenerate', 'python experiments/ship_proxies.py')}"]
    return "\n".join(lines)


def _parse(b: BuiltinProxy) -> Any:
    from eznas import program

    try:
        return program.parse_expression(b.expression, program.load_primitive_set(b.primitive_set))
    except EznasError as e:
        raise EznasError(f"built-in proxy {b.name}: {e}") from None


def load(name: str) -> Any:
    """Built-in proxy ``name`` as an :class:`eznas.export.Proxy` (parsed, never executed) whose
    ``__doc__`` is :func:`describe`; a hybrid one (``"primitive_set": "hybrid"``) as an
    :class:`eznas.hybrid_proxy.HybridProxy`."""
    from eznas import simplify as simp
    from eznas.export.loading import Proxy, ProxySettings

    b = read(name)
    if b.primitive_set == "hybrid":
        from eznas import hybrid_proxy

        return hybrid_proxy.load(b)
    settings = ProxySettings.from_json(b.settings, f"built-in proxy {name}")
    proxy = Proxy(name, simp.simplify(_parse(b)), settings, raw=b.expression, source=f"built-in:{name}")
    proxy.__doc__ = describe(name)
    return proxy
