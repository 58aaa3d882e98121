"""Evolved proxies as standalone modules; loading proxies safely; ``eznas export`` and ``eznas score``.

``eznas export RUN_DIR [--rank K] --out proxy.py`` writes a Python module that needs only torch.
It records, on any batch, the same sketched statistics as the search (same hooks, same seeded
sketch indices, same D / N / P passes, float32), evaluates the evolved expression (simplified by
:mod:`eznas.simplify`, provably equivalent) with copies of the primitives it uses, and exposes
``score(model, inputs, targets, loss_fn=None, noise=None, perturbed=None) -> float``. Its
docstring shows the raw and simplified infix, the LaTeX, the provenance and the settings, and
embeds them as a JSON block; its last line is the SHA-256 of everything above it. The run
directory gets ``best.txt`` (raw infix, one line), ``best.tex`` (LaTeX of the simplified form) and
``best_simplified.txt`` for rank 1, ``rank<K>.*`` for another rank.

D is ``inputs``; N and P are drawn from ``torch.Generator().manual_seed(seed)`` (N first, P = D +
noise_scale * Gaussian) unless given. :func:`eznas.batches.make_batches` draws its image indices from
the same generator first, so pass its ``N`` and ``P`` to reproduce the search's statistics
exactly: the score then equals the in-engine score (``compute_net`` + ``Evaluator`` +
``net_scores``) of the same network (tested to 1e-6 relative; in practice bit for bit).
``eznas score`` does that for you with ``--seed`` / ``--batch-size``.

Trust model (:func:`load_proxy`)
--------------------------------
By default nothing from a proxy file is executed: the file must carry the eznas marker on its
first line and a SHA-256 of its content on its last line that matches, and :func:`load_proxy`
then *parses* the embedded JSON (expression + settings, validated and bounded) and rebuilds the
proxy in-process from eznas' own primitives. Any edit, and any file not written by ``eznas
export``, is refused with a one-line error. ``trust=True`` (``eznas score --trust``) instead
imports the file as Python, i.e. runs its code, wherever it lives: only do that for files you
wrote or reviewed. The hash guards against accidental edits and wrong files, not against an
attacker (who can recompute it); safety comes from never executing a file unless you opt in.
:func:`load_run_proxies` reads a run directory's ``config.yaml`` (safe YAML) and
``hall_of_fame.json`` the same way.

Runtime (shared by both paths)
------------------------------
The functions of the "runtime" section below use only torch; ``eznas export`` copies their source
verbatim into the generated module, so the in-process proxy and the exported file run the same
code. Which modules are units:

- *eznas-style units*: every module with child modules ``relu``, ``conv`` and ``bn`` and a class
  attribute ``order`` of ``"relu-conv-bn"`` or ``"conv-bn-relu"`` (all eznas search-space units;
  give your own blocks these to mark them). X = the unit's input, Z = ``bn``'s output, A =
  ``relu``'s output, W = the weight of ``conv`` (its last Conv2d when it is a sequence), exactly
  as :mod:`eznas.stats` records them.
- *plain PyTorch models* (no such unit): every ``nn.Conv2d`` is a unit, in ``model.modules()``
  order. X = the conv's input; Z = the conv's output, or the output of the ``nn.BatchNorm2d``
  module applied directly to that tensor (the same tensor object, as in ``nn.Sequential(conv,
  bn)``) and not modified in place before; A = the output of the ``nn.ReLU`` module applied
  directly to that Z (in-place or not, but not after an in-place ``out += identity``) if there is
  one, otherwise ``relu(Z)`` computed from Z, with gA taken as the gradient reaching Z;
  W = the conv's weight. A model without any ``nn.Conv2d`` cannot be scored.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import csv
import datetime
import hashlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import eznas
from eznas.atomic import atomic_write_text
from eznas import primitives as prim_mod
from eznas import simplify as simp
from eznas import sketch as sketch_mod
from eznas.errors import EznasError
from eznas.sketch import SketchIndex, make_index
from eznas.stats import _FAMILY_SEED as _STATS_FAMILY_SEED
from eznas.tensors import INDEX, TENSOR_NAMES

__all__ = ["Proxy", "ProxySettings", "load_proxy", "load_run_proxies", "export_proxy", "module_source",
           "read_proxy_file", "cmd_export", "cmd_score", "FORMAT"]

FORMAT = 1
MARKER = "# eznas-proxy: format"
HASH_PREFIX = "# eznas-sha256: "
JSON_BEGIN = "EZNAS-PROXY-JSON-BEGIN"
JSON_END = "EZNAS-PROXY-JSON-END"
MAX_FILE_BYTES = 4 * 2**20
UNIT_AGGREGATES = ("mean", "sum", "median")
#: most sketch values per tensor a parsed proxy file may ask for (bounds the memory it can make us use)
MAX_SKETCH = 2**16

# ============================================================================ runtime
# Everything in this section uses only torch and is copied verbatim into exported modules.

_TENSOR_NAMES = TENSOR_NAMES
_INDEX = dict(INDEX)
_FAMILY_SEED = dict(_STATS_FAMILY_SEED)


def _family(name: str) -> str:
    """Sketch index family of a statistic: W for weights and weight gradients, else its role."""
    if name == "W" or name.startswith("gW"):
        return "W"
    return name.split("_")[0].lstrip("g")


def _is_unit(m: nn.Module) -> bool:
    """An eznas-style ReLU-Conv-BN unit: children relu, conv, bn and a class attribute ``order``."""
    if getattr(type(m), "order", None) not in ("relu-conv-bn", "conv-bn-relu"):
        return False
    if not all(isinstance(getattr(m, k, None), nn.Module) for k in ("relu", "conv", "bn")):
        return False
    return any(isinstance(c, nn.Conv2d) for c in m.conv.modules())


def _unit_weight(unit: nn.Module) -> nn.Module:
    """The conv whose weight is W: ``conv`` itself, or its last Conv2d when it is a sequence."""
    if isinstance(unit.conv, nn.Conv2d):
        return unit.conv
    return [c for c in unit.conv.modules() if isinstance(c, nn.Conv2d)][-1]


class _StatsRecorder:
    """Hooks that fill ``values`` (units, 22, R, s, s) with sketches of every unit's statistics."""

    def __init__(self, model: nn.Module, R: int, s: int, seed: int) -> None:
        self.R, self.s, self.seed = R, s, seed
        self.units = [m for m in model.modules() if _is_unit(m)]
        self.plain = not self.units
        if self.plain:
            self.units = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not self.units:
            raise ValueError("eznas proxy: the model has no ReLU-Conv-BN unit and no nn.Conv2d to record")
        self.values = torch.zeros(len(self.units), len(_TENSOR_NAMES), R, s, s)
        self._index: dict[tuple, SketchIndex] = {}
        self._input = "D"
        self._handles: list = []
        self._z: dict[int, tuple] = {}  # plain models: unit -> (tensor now taken as Z, its version)
        self._z_token: dict[int, object] = {}
        self._a_from_z: dict[int, bool] = {}
        if self.plain:
            self._hook_plain(model)
        else:
            self._hook_units()

    # -- hooks
    def _hook_units(self) -> None:
        for u, unit in enumerate(self.units):
            self._handles.append(unit.register_forward_pre_hook(self._input_hook(u)))
            self._handles.append(unit.bn.register_forward_hook(self._output_hook(u, "Z")))
            self._handles.append(unit.relu.register_forward_hook(self._output_hook(u, "A")))

    def _hook_plain(self, model: nn.Module) -> None:
        for u, conv in enumerate(self.units):
            self._handles.append(conv.register_forward_pre_hook(self._input_hook(u)))
            self._handles.append(conv.register_forward_hook(self._conv_hook(u)))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                self._handles.append(m.register_forward_hook(self._bn_hook))
            elif isinstance(m, nn.ReLU):
                self._handles.append(m.register_forward_hook(self._relu_hook))

    def _input_hook(self, u: int):
        def hook(module: nn.Module, args: tuple) -> None:
            self._record(u, "X", args[0])
        return hook

    def _output_hook(self, u: int, role: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self._record(u, role, out)
        return hook

    def _conv_hook(self, u: int):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self._take_z(u, out)
        return hook

    def _owner(self, t: Any, bumps: int = 0) -> int | None:
        """The unit whose Z is ``t``, unmodified since (but for ``bumps`` in-place ops by the caller)."""
        for u, (z, version) in self._z.items():
            if z is t:
                current = getattr(t, "_version", None)
                return u if current is None or current == version + bumps else None
        return None

    def _bn_hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        u = self._owner(args[0])
        if u is not None:
            self._take_z(u, out)

    def _relu_hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        u = self._owner(args[0], 1 if out is args[0] else 0)
        if u is not None:
            del self._z[u]
            self._a_from_z[u] = False
            self._record(u, "A", out)

    def _take_z(self, u: int, t: torch.Tensor) -> None:
        token = object()
        self._z[u], self._z_token[u], self._a_from_z[u] = (t, getattr(t, "_version", None)), token, True
        x = self._input
        self._sketch(u, "Z_" + x, t)
        self._sketch(u, "A_" + x, torch.relu(t.detach()))
        if t.requires_grad:
            t.register_hook(self._z_grad_hook(u, token, x))

    def _z_grad_hook(self, u: int, token: object, x: str):
        def hook(g: torch.Tensor) -> None:
            if self._z_token.get(u) is token:
                self._sketch(u, "gZ_" + x, g)
                if self._a_from_z.get(u):
                    self._sketch(u, "gA_" + x, g)
        return hook

    # -- sketches
    def _record(self, u: int, role: str, t: torch.Tensor) -> None:
        name = role + "_" + self._input
        self._sketch(u, name, t)
        if t.requires_grad:
            t.register_hook(lambda g, u=u, n="g" + name: self._sketch(u, n, g))

    def _sketch(self, u: int, name: str, t: torch.Tensor) -> None:
        fam = _family(name)
        if fam == "W":
            t = t.reshape(t.shape[0], -1)
        key = (u, fam, tuple(t.shape), t.device)
        idx = self._index.get(key)
        if idx is None:
            seed = self.seed * 1_000_003 + u * 101 + _FAMILY_SEED[fam]
            idx = make_index(tuple(t.shape), self.R, self.s, seed)
            if t.device.type != "cpu":
                idx = SketchIndex(tuple(i.to(t.device) for i in idx.index), idx.valid.to(t.device))
            self._index[key] = idx
        self.values[u, _INDEX[name]] = idx.take(t).float().cpu()

    def set_input(self, name: str) -> None:
        self._input = name
        self._z.clear()

    def record_weights(self, name: str | None = None) -> None:
        """Sketch W (name None) or the weight gradients ``gW_<input>`` after a backward pass."""
        for u, unit in enumerate(self.units):
            w = (unit if self.plain else _unit_weight(unit)).weight
            if name is None:
                self._sketch(u, "W", w)
            elif w.grad is not None:
                self._sketch(u, name, w.grad)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._z.clear()


def _draw_inputs(inputs: torch.Tensor, seed: int, noise_scale: float, noise: torch.Tensor | None,
                 perturbed: torch.Tensor | None) -> list[tuple[str, torch.Tensor]]:
    """D = inputs; N and P given, or drawn as eznas.batches.make_batches draws them (N first)."""
    if noise is None or perturbed is None:
        g = torch.Generator().manual_seed(int(seed))
        d = inputs.detach().to("cpu", torch.float32)
        drawn_n = torch.randn(d.shape, generator=g)
        drawn_p = d + noise_scale * torch.randn(d.shape, generator=g)
        noise = drawn_n.to(inputs.device, inputs.dtype) if noise is None else noise
        perturbed = drawn_p.to(inputs.device, inputs.dtype) if perturbed is None else perturbed
    return [("D", inputs), ("N", noise), ("P", perturbed)]


def _save_state(model: nn.Module) -> tuple:
    return ([(m, m.training) for m in model.modules()], [(p, p.grad) for p in model.parameters()],
            [(b, b.detach().clone()) for b in model.buffers()])


def _restore_state(state: tuple) -> None:
    modes, grads, buffers = state
    for m, mode in modes:
        m.training = mode
    for p, g in grads:
        p.grad = g
    with torch.no_grad():
        for b, saved in buffers:
            b.copy_(saved)


def _run_passes(model: nn.Module, batches: list, targets: torch.Tensor, loss_fn: Callable,
                rec: _StatsRecorder) -> None:
    """One forward + backward pass per input D, N, P, BatchNorm in training mode."""
    model.train()
    rec.record_weights(None)
    for name, x in batches:
        model.zero_grad(set_to_none=True)
        rec.set_input(name)
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        loss_fn(out, targets).backward()
        rec.record_weights("gW_" + name)
    model.zero_grad(set_to_none=True)


def _statistics(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, R: int, s: int, seed: int,
                noise_scale: float, loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """Sketched statistics (units, 22, R, s, s); the model's mode, grads and buffers are restored."""
    batches = _draw_inputs(inputs, seed, noise_scale, noise, perturbed)
    state = _save_state(model)
    rec = _StatsRecorder(model, R, s, seed)
    devices = [inputs.device.index or 0] if inputs.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(int(seed))
            _run_passes(model, batches, targets, loss_fn or F.cross_entropy, rec)
    finally:
        rec.close()
        _restore_state(state)
    return rec.values


def _unit_scores(program: Callable, values: torch.Tensor) -> torch.Tensor:
    """Per-unit scores; a numerical exception means NaN scores (as in the search)."""
    try:
        with torch.no_grad():
            return program(values)
    except Exception:  # noqa: BLE001
        return torch.full((values.shape[0],), float("nan"))


def _aggregate(scores: torch.Tensor, how: str) -> float:
    """Network score from per-unit scores (float64); NaN if any unit's score is not finite."""
    s = scores.detach().to("cpu", torch.float64).reshape(-1)
    if s.numel() == 0 or not bool(torch.isfinite(s).all()):
        return math.nan
    if how == "sum":
        return float(s.sum())
    if how == "median":
        return float(s.median())
    return float(s.sum() / s.numel())


_RUNTIME: tuple[Any, ...] = (_family, _is_unit, _unit_weight, _StatsRecorder, _draw_inputs, _save_state,
                             _restore_state, _run_passes, _statistics, _unit_scores, _aggregate)
_RUNTIME_CONSTANTS = ("_TENSOR_NAMES", "_INDEX", "_FAMILY_SEED")
_SKETCH: tuple[Any, ...] = (SketchIndex, sketch_mod._offsets, sketch_mod._grid, make_index)

# ============================================================================ settings and proxies


@dataclass(frozen=True)
class ProxySettings:
    """Statistics settings of a proxy (those of its search)."""

    R: int
    s: int
    seed: int
    noise_scale: float = 0.1
    unit_aggregate: str = "mean"
    batch_size: int | None = None  # the search's batch size (informational: any batch works)
    width: int | None = None  # the search's network width / depth overrides (informational)
    depth: int | None = None
    cache_dtype: str = "float32"  # how the search stored statistics (proxies compute in float32)

    @classmethod
    def from_json(cls, raw: Any, where: str) -> "ProxySettings":
        if not isinstance(raw, dict):
            raise EznasError(f"{where}: 'settings' must be a JSON object")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise EznasError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))}")
        got = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        for k in ("R", "s", "seed"):
            if k not in got:
                raise EznasError(f"{where}: setting {k!r} is missing")
        for k in ("R", "s", "seed", "batch_size", "width", "depth"):
            v = got.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise EznasError(f"{where}: setting {k!r} must be an integer, got {v!r}")
        if not (1 <= got["R"] and 1 <= got["s"] <= 256 and got["R"] * got["s"] ** 2 <= MAX_SKETCH):
            raise EznasError(f"{where}: settings need R >= 1, 1 <= s <= 256 and R * s * s <= {MAX_SKETCH}")
        if not -2**63 < got["seed"] < 2**63:
            raise EznasError(f"{where}: setting 'seed' must be a 64-bit integer")
        ns = got.get("noise_scale", 0.1)
        if isinstance(ns, bool) or not isinstance(ns, (int, float)) or not math.isfinite(ns) or ns < 0:
            raise EznasError(f"{where}: setting 'noise_scale' must be a finite number >= 0")
        got["noise_scale"] = float(ns)
        if got.get("unit_aggregate", "mean") not in UNIT_AGGREGATES:
            raise EznasError(f"{where}: setting 'unit_aggregate' must be one of {', '.join(UNIT_AGGREGATES)}")
        if not isinstance(got.get("cache_dtype", "float32"), str):
            raise EznasError(f"{where}: setting 'cache_dtype' must be text")
        return cls(**got)


class Proxy:
    """An evolved proxy evaluated in-process with eznas' primitives (nothing from a file is run).

    ``proxy(model, inputs, targets, loss_fn=None, noise=None, perturbed=None) -> float`` behaves
    exactly like the ``score`` function of the module ``eznas export`` writes for it.
    """

    def __init__(self, name: str, expression: simp.Expr, settings: ProxySettings, raw: str | None = None,
                 source: str | None = None) -> None:
        if simp.type_of(expression) is not prim_mod.Scalar:
            raise EznasError(f"proxy {name}: the expression must give a Scalar per unit")
        self.name = name
        self.expression = expression
        self.settings = settings
        self.raw = raw if raw is not None else simp.to_infix(expression)
        self.source = source

    @property
    def infix(self) -> str:
        return simp.to_infix(self.expression)

    @property
    def latex(self) -> str:
        return simp.to_latex(self.expression)

    @property
    def noise_scale(self) -> float:
        return self.settings.noise_scale

    def program(self, values: torch.Tensor) -> torch.Tensor:
        return simp.evaluate(self.expression, values)

    def statistics(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                   perturbed: torch.Tensor | None = None) -> torch.Tensor:
        st = self.settings
        try:
            return _statistics(model, inputs, targets, st.R, st.s, st.seed, st.noise_scale, loss_fn, noise, perturbed)
        except ValueError as e:
            if str(e).startswith("eznas proxy:"):
                raise EznasError(f"{self.name}: {str(e)[len('eznas proxy: '):]}") from None
            raise

    def unit_scores(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                    perturbed: torch.Tensor | None = None) -> torch.Tensor:
        return _unit_scores(self.program, self.statistics(model, inputs, targets, loss_fn, noise, perturbed))

    def __call__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                 perturbed: torch.Tensor | None = None) -> float:
        return _aggregate(self.unit_scores(model, inputs, targets, loss_fn, noise, perturbed),
                          self.settings.unit_aggregate)

    def __repr__(self) -> str:
        return f"Proxy({self.name!r}, {self.infix!r})"


# ============================================================================ run directories


@dataclass
class _Run:
    path: Path
    cfg: Any  # eznas.config.Config
    hall: list[dict[str, Any]]

    def entry(self, rank: int) -> dict[str, Any]:
        if not self.hall:
            raise EznasError(f"run directory {self.path} has an empty hall of fame")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(self.hall):
            raise EznasError(f"--rank must be in 1..{len(self.hall)} for {self.path} (got {rank})")
        entry = self.hall[rank - 1]
        if not isinstance(entry, dict) or not isinstance(entry.get("infix"), str):
            raise EznasError(f"{self.path / 'hall_of_fame.json'}: entry {rank} has no 'infix' text")
        return entry

    def settings(self) -> ProxySettings:
        c = self.cfg
        return ProxySettings(R=c.stats.R, s=c.stats.s, seed=c.seed, noise_scale=float(c.stats.noise_scale),
                             unit_aggregate=c.search.unit_aggregate, batch_size=c.stats.batch_size,
                             width=c.network.width, depth=c.network.depth, cache_dtype=c.stats.dtype)


def _load_run(run_dir: str | os.PathLike) -> _Run:
    from eznas import config as config_mod

    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise EznasError(f"run directory {path} does not exist")
    cfg_path, hof_path = path / "config.yaml", path / "hall_of_fame.json"
    for p in (cfg_path, hof_path):
        if not p.is_file():
            raise EznasError(f"{path} is not a finished run directory: {p.name} is missing")
    cfg = config_mod.load(cfg_path)
    try:
        raw = json.loads(hof_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise EznasError(f"{hof_path} is not valid JSON") from None
    hall = raw.get("hall_of_fame") if isinstance(raw, dict) else None
    if not isinstance(hall, list):
        raise EznasError(f"{hof_path} has no 'hall_of_fame' list")
    return _Run(path, cfg, hall)


def load_run_proxies(run_dir: str | os.PathLike) -> dict[str, Proxy]:
    """The hall of fame of a run as in-process proxies ``{"rank1": ..., "rank2": ...}``, best first."""
    run = _load_run(run_dir)
    st = run.settings()
    out: dict[str, Proxy] = {}
    for k in range(1, len(run.hall) + 1):
        infix = run.entry(k)["infix"]
        expr = simp.simplify(simp.parse(infix))
        out[f"rank{k}"] = Proxy(f"{run.path.name}:rank{k}", expr, st, raw=infix, source=str(run.path))
    return out


# ============================================================================ module source


def _fn_source(obj: Any) -> str:
    """Source of a top-level function or class without its registration decorator."""
    src = textwrap.dedent(inspect.getsource(obj))
    node = ast.parse(src).body[0]
    lines = src.splitlines()
    keep = [d for d in node.decorator_list if not (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "primitive")]
    start = min([node.lineno] + [d.lineno for d in keep]) - 1  # type: ignore[attr-defined]
    return "\n".join(lines[start:]).rstrip()


def _names_used(src: str) -> set[str]:
    """Free names of a function's source: read somewhere, never bound inside it."""
    nodes = list(ast.walk(ast.parse(src)))
    loads = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = {n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {a.arg for n in nodes if isinstance(n, ast.arguments)
              for a in (*n.posonlyargs, *n.args, *n.kwonlyargs, n.vararg, n.kwarg) if a is not None}
    return loads - bound


def _literal(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f'float("{value}")'
    if isinstance(value, tuple) and all(isinstance(v, (int, float, str)) for v in value):
        return "(" + ", ".join(_literal(name, v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ", ".join(f"{k!r}: {_literal(name, v)}" for k, v in value.items()) + "}"
    raise EznasError(f"cannot export the primitives' helper {name!r} of type {type(value).__name__}")


def _primitive_sources(names: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(constant lines, function sources, primitive name -> Python name) for ``names`` and their helpers."""
    glb = vars(prim_mod)
    consts: dict[str, str] = {}
    funcs: dict[str, str] = {}
    pyname = {n: prim_mod.REGISTRY[n].fn.__name__ for n in names}
    todo = [prim_mod.REGISTRY[n].fn for n in names]
    while todo:
        fn = todo.pop(0)
        if fn.__name__ in funcs:
            continue
        src = _fn_source(fn)
        funcs[fn.__name__] = src
        for ident in sorted(_names_used(src)):
            value = glb.get(ident)
            if ident in funcs or ident in ("torch", "F", "math") or value is None or isinstance(value, type):
                continue
            if callable(value) and getattr(value, "__module__", None) == prim_mod.__name__:
                todo.append(value)
            elif not callable(value) and not inspect.ismodule(value):
                consts[ident] = f"{ident} = {_literal(ident, value)}"
    order = [n for n in glb if n in funcs]  # definition order of the primitives module
    return list(consts.values()), [funcs[n] for n in order], pyname


def _nodes(expr: simp.Expr) -> list[simp.Expr]:
    out = [expr]
    for a in expr.args if isinstance(expr, simp.Call) else ():
        out.extend(_nodes(a))
    return out


def program_source(expr: simp.Expr, pyname: dict[str, str]) -> str:
    """The expression as straight-line torch code: ``program(v) -> (units,)`` scores."""
    lines = ["def program(v: torch.Tensor) -> torch.Tensor:",
             '    """Per-unit scores (units,) of the expression on statistics v (units, 22, R, s, s)."""']
    if any(isinstance(n, simp.Const) for n in _nodes(expr)):
        lines.append("    rows = v.shape[0]")
    names: dict[simp.Expr, str] = {}

    def emit(node: simp.Expr) -> str:
        if node in names:
            return names[node]
        if isinstance(node, simp.Var):
            code = f"v[:, {INDEX[node.name]}]"
        elif isinstance(node, simp.Const):
            code = f"torch.full((rows,), {simp.format_constant(node.value)}, dtype=torch.float32, device=v.device)"
        else:
            args = [emit(a) for a in node.args]
            code = f"{pyname[node.name]}({', '.join(args)})"
        var = f"t{len(names)}"
        names[node] = var
        text = simp.to_infix(node)
        lines.append(f"    {var} = {code}  # {text if len(text) <= 60 else text[:57] + '...'}")
        return var

    lines.append(f"    return {emit(expr)}")
    return "\n".join(lines) + "\n"


def _doc_safe(text: str) -> str:
    return text.replace('"""', "'''").replace("\r", " ")


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _provenance_lines(prov: dict[str, Any]) -> list[str]:
    out = [f"    run directory     {prov.get('run_dir')}",
           f"    config            {prov.get('config')}",
           f"    hall-of-fame rank {prov.get('rank')}",
           f"    seed              {prov.get('seed')}",
           f"    primitive set     {prov.get('primitive_set')}",
           f"    tasks             {', '.join(prov.get('tasks', []))}",
           f"    fitness           {prov.get('fitness')}; evolve {_fmt(prov.get('evolve'))}, "
           f"validate {_fmt(prov.get('validate'))}"]
    for task, v in (prov.get("validate_per_task") or {}).items():
        out.append(f"    validate          {task}: {_fmt(v)}")
    for task, r in (prov.get("test") or {}).items():
        if isinstance(r, dict):
            out.append(f"    test              {task}: Spearman {_fmt(r.get('spearman'))}, "
                       f"Kendall {_fmt(r.get('kendall'))} ({r.get('nets')} nets)")
    out.append(f"    exported          {prov.get('exported')} by eznas {eznas.__version__}")
    return out


def _settings_lines(st: ProxySettings) -> list[str]:
    fam = ", ".join(f"{k}: {v}" for k, v in _FAMILY_SEED.items())
    return [
        f"    sketch        R = {st.R} blocks of s x s = {st.s} x {st.s} per tensor; indices seeded per unit u and",
        f"                  family f by seed * 1000003 + u * 101 + {{{fam}}}[f], seed = {st.seed}",
        f"    inputs        D = inputs; N = standard Gaussian of D's shape; P = D + {st.noise_scale!r} * Gaussian;",
        f"                  N then P drawn from torch.Generator().manual_seed({st.seed}) unless passed as",
        "                  score(..., noise=N, perturbed=P) (pass eznas.batches.make_batches' N and P to",
        "                  reproduce the search's statistics exactly)",
        "    passes        one forward + backward pass per input, BatchNorm in training mode, loss",
        "                  loss_fn(output, targets) (default cross-entropy), under torch.manual_seed(seed);",
        "                  the model's train/eval mode, gradients and buffers are restored afterwards",
        "    units         eznas-style ReLU-Conv-BN units, else every nn.Conv2d (see _StatsRecorder)",
        f"    aggregation   {st.unit_aggregate} of the per-unit scores in float64; NaN if any unit's is not finite",
        f"    dtype         statistics in float32 (the search cached them as {st.cache_dtype})",
        f"    search batch  {st.batch_size} images; network width {st.width}, depth {st.depth} (None: the benchmark's)",
    ]


def _docstring(meta: dict[str, Any], st: ProxySettings) -> str:
    prov = meta["provenance"]
    lines = [
        f"Zero-cost NAS proxy exported by eznas: rank {prov.get('rank')} of run {prov.get('run_dir')}.",
        "",
        "Needs only PyTorch. ``score(model, inputs, targets) -> float`` (higher: predicted better);",
        "``unit_scores`` and ``statistics`` give the per-unit scores and the sketched statistics.",
        "",
        "Expression (simplified, provably equivalent to the evolved one; see eznas.simplify):",
        f"    {meta['expression']}",
        "Expression as evolved (raw):",
        f"    {meta['raw_expression']}",
        "LaTeX:",
        f"    {meta['latex']}",
        "Statistics: W weight; X unit input, Z pre-activation, A activation on input D (data), N (noise)",
        "or P (perturbed data); gX, gZ, gA, gW their loss gradients (\\nabla in LaTeX).",
        "",
        "Provenance",
        *_provenance_lines(prov),
        "",
        "Settings (the search's)",
        *_settings_lines(st),
        "",
        "Trust: `eznas.load_proxy(path)` never runs this file; it checks the SHA-256 on the last line",
        "and rebuilds the proxy from the JSON below with eznas' own primitives. Importing this file",
        "(or load_proxy(path, trust=True)) runs its code: edit it only if you then trust it yourself.",
        "",
        JSON_BEGIN,
        json.dumps(meta, indent=1, ensure_ascii=True),
        JSON_END,
    ]
    body = _doc_safe("\n".join(lines[:-3])) + "\n" + "\n".join(lines[-3:])
    if '"""' in body:
        raise EznasError("cannot export: the proxy's description contains a triple quote")
    return 'r"""' + body + '\n"""\n'


_HEADER_IMPORTS = """from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
"""

_ENTRY = '''

def statistics(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable | None = None,
               noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """Sketched statistics (units, 22, R, s, s) of ``model`` on the batch (see the module docstring)."""
    return _statistics(model, inputs, targets, R, S, SEED, NOISE_SCALE, loss_fn, noise, perturbed)


def unit_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable | None = None,
                noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """The expression's score of every unit (units,)."""
    return _unit_scores(program, statistics(model, inputs, targets, loss_fn, noise, perturbed))


def score(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable | None = None,
          noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> float:
    """The proxy's score of ``model`` on ``inputs`` / ``targets`` (one batch; higher: predicted better).

    ``loss_fn(output, targets)`` defaults to cross-entropy; ``noise`` / ``perturbed`` replace the
    seeded N and P. The model's mode, gradients and buffers are left as they were.
    """
    return _aggregate(unit_scores(model, inputs, targets, loss_fn, noise, perturbed), UNIT_AGGREGATE)
'''


def module_source(expr: simp.Expr, meta: dict[str, Any], st: ProxySettings) -> str:
    """The complete text of an exported proxy module, hash line included."""
    consts, prim_srcs, pyname = _primitive_sources(simp.primitives_used(expr))
    runtime_consts = [f"{n} = {_literal(n, globals()[n])}" for n in _RUNTIME_CONSTANTS]
    settings = [f"R = {st.R}", f"S = {st.s}", f"SEED = {st.seed}", f"NOISE_SCALE = {st.noise_scale!r}",
                f"UNIT_AGGREGATE = {st.unit_aggregate!r}", f"EXPRESSION = {meta['expression']!r}",
                f"SETTINGS = {_literal('SETTINGS', asdict(st))}"]
    sections = [
        ("settings (as in the search)", "\n".join(settings)),
        ("sketch indices (copied from eznas.sketch)", "\n\n\n".join(_fn_source(o) for o in _SKETCH)),
        ("statistics (copied from the runtime of eznas.export)",
         "\n".join(runtime_consts) + "\n\n\n" + "\n\n\n".join(_fn_source(o) for o in _RUNTIME)),
        ("primitives the expression uses (copied from eznas.primitives)",
         "\n".join(consts) + "\n\n\n" + "\n\n\n".join(prim_srcs)),
        ("the expression", program_source(expr, pyname) + _ENTRY),
    ]
    head = f"{MARKER} {FORMAT} (written by `eznas export`; the last line is a SHA-256 of everything above it)\n"
    body = head + _docstring(meta, st) + _HEADER_IMPORTS + "".join(
        f"\n\n# {'-' * 64} {title}\n{text.strip()}\n" for title, text in sections)
    _check_names(body)
    return body + HASH_PREFIX + hashlib.sha256(body.encode("utf-8")).hexdigest() + "\n"


def _check_names(source: str) -> None:
    """Every top-level name is defined once and shadows no builtin the code relies on."""
    seen: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        else:
            continue
        for n in names:
            if n in seen or hasattr(builtins, n):
                raise EznasError(f"cannot export: the generated module would define {n!r} twice or shadow a builtin")
            seen.add(n)


# ============================================================================ export


def _provenance(run: _Run, rank: int, entry: dict[str, Any]) -> dict[str, Any]:
    c = run.cfg
    when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    return {"run_dir": str(run.path.resolve()), "config": str((run.path / "config.yaml").resolve()), "rank": rank,
            "seed": c.seed, "primitive_set": c.search.primitive_set,
            "tasks": [f"{t.space}/{t.dataset}" for t in c.tasks],
            "fitness": f"{c.search.fitness}, {c.search.aggregate} over tasks",
            "evolve": entry.get("evolve"), "validate": entry.get("validate"),
            "validate_per_task": entry.get("validate_per_task"), "test": entry.get("test"), "exported": when,
            "eznas_version": eznas.__version__}


@dataclass
class ExportResult:
    out: Path
    raw: str
    simplified: str
    latex: str
    run_files: list[Path]


def export_proxy(run_dir: str | os.PathLike, out: str | os.PathLike, rank: int = 1) -> ExportResult:
    """Write hall-of-fame program ``rank`` of ``run_dir`` as a standalone module ``out``, and its
    infix and LaTeX into the run directory."""
    run = _load_run(run_dir)
    entry = run.entry(rank)
    raw_text = " ".join(entry["infix"].split())
    expr = simp.simplify(simp.parse(raw_text))
    st = run.settings()
    meta = {"format": FORMAT, "expression": simp.to_infix(expr), "raw_expression": raw_text,
            "latex": simp.to_latex(expr), "settings": asdict(st), "provenance": _provenance(run, rank, entry)}
    out_path = Path(out).expanduser()
    atomic_write_text(out_path, module_source(expr, meta, st))
    stem = "best" if rank == 1 else f"rank{rank}"
    files = [run.path / f"{stem}.txt", run.path / f"{stem}.tex", run.path / f"{stem}_simplified.txt"]
    for path, text in zip(files, (raw_text, meta["latex"], meta["expression"])):
        atomic_write_text(path, text + "\n")
    return ExportResult(out_path, raw_text, meta["expression"], meta["latex"], files)


def cmd_export(args: argparse.Namespace) -> int:
    res = export_proxy(args.run_dir, args.out, args.rank)
    print(f"exported rank {args.rank} of {args.run_dir} -> {res.out}")
    print(f"  raw:        {res.raw}")
    print(f"  simplified: {res.simplified}")
    print(f"  LaTeX:      {res.latex}")
    print(f"  wrote {', '.join(str(p) for p in res.run_files)}")
    return 0


# ============================================================================ loading


def read_proxy_file(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON block of an exported proxy file, after checking its marker and SHA-256 (no code runs)."""
    p = Path(path).expanduser()
    hint = "; pass trust=True (eznas score --trust) to run it as Python if you trust it"
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EznasError(f"cannot read proxy file {p}: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise EznasError(f"proxy file {p} is larger than {MAX_FILE_BYTES // 2**20} MiB{hint}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EznasError(f"proxy file {p} is not UTF-8 text") from None
    if not text.startswith(f"{MARKER} {FORMAT} "):
        raise EznasError(f"{p} is not a proxy written by `eznas export` (no format-{FORMAT} marker){hint}")
    body, _, last = text.rstrip("\n").rpartition("\n")
    m = re.fullmatch(re.escape(HASH_PREFIX) + r"([0-9a-f]{64})", last.strip())
    if m is None or hashlib.sha256((body + "\n").encode("utf-8")).hexdigest() != m.group(1):
        raise EznasError(f"{p} was modified after `eznas export` (SHA-256 mismatch){hint}")
    start, end = body.find("\n" + JSON_BEGIN + "\n"), body.find("\n" + JSON_END + "\n")
    if start < 0 or end < start:
        raise EznasError(f"{p} has no {JSON_BEGIN} block{hint}")
    try:
        meta = json.loads(body[start + len(JSON_BEGIN) + 2:end])
    except json.JSONDecodeError:
        raise EznasError(f"{p}: the JSON block is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("expression"), str):
        raise EznasError(f"{p}: the JSON block is not an eznas proxy description of format {FORMAT}")
    return meta


def _parsed_file_proxy(path: Path) -> Proxy:
    meta = read_proxy_file(path)
    st = ProxySettings.from_json(meta.get("settings"), str(path))
    expr = simp.parse(meta["expression"])
    raw = meta.get("raw_expression")
    return Proxy(path.stem, expr, st, raw=raw if isinstance(raw, str) else None, source=str(path))


def _trusted_module(path: Path) -> Callable[..., float]:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"eznas_trusted_proxy_{digest}", path)
    if spec is None or spec.loader is None:
        raise EznasError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's own code: report it on one line
        sys.modules.pop(spec.name, None)
        raise EznasError(f"importing trusted proxy {path} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, "score", None)
    if not callable(fn):
        raise EznasError(f"{path} defines no score(model, inputs, targets) function")
    return fn


def load_proxy(path_or_name: str | os.PathLike, trust: bool = False) -> Callable[..., float]:
    """A proxy ``(model, inputs, targets, loss_fn=None, ...) -> float`` from:

    - the name of a built-in baseline (:mod:`eznas.proxies`), e.g. ``"synflow"``;
    - a file written by ``eznas export``: parsed, never executed (see the module docstring);
      with ``trust=True`` any ``.py`` file defining ``score`` is imported and its ``score`` returned;
    - a run directory: its rank-1 hall-of-fame program (:func:`load_run_proxies` gives them all).
    """
    spec = os.fspath(path_or_name)
    path = Path(spec).expanduser()
    if path.is_file():
        return _trusted_module(path) if trust else _parsed_file_proxy(path)
    if path.is_dir():
        return next(iter(load_run_proxies(path).values()))
    from eznas.proxies import get_proxy, proxy_names

    if spec in proxy_names():
        return get_proxy(spec)
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        raise EznasError(f"proxy file or run directory not found: {spec}")
    return get_proxy(spec)  # raises the unknown-name error listing the valid names


# ============================================================================ eznas score


def _read_archs(path: str) -> list[str]:
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EznasError(f"cannot read --archs file {path}: {getattr(e, 'strerror', None) or e}") from None
    archs = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not archs:
        raise EznasError(f"--archs file {path} lists no architectures")
    return archs


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _noise_scale_of(proxy: Callable[..., Any]) -> float | None:
    if isinstance(proxy, Proxy):
        return proxy.noise_scale
    value = getattr(proxy, "__globals__", {}).get("NOISE_SCALE")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scorer(proxy: Callable[..., float], space: Any, dataset: str, batches: Any) -> Callable[[nn.Module], float]:
    kwargs: dict[str, Any] = {}
    if _accepts(proxy, "loss_fn"):
        kwargs["loss_fn"] = lambda out, t: space.loss(out, batches.D, t, dataset)
    if _accepts(proxy, "noise") and _accepts(proxy, "perturbed"):
        kwargs.update(noise=batches.N, perturbed=batches.P)
    return lambda model: float(proxy(model, batches.D, batches.targets, **kwargs))


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from eznas.batches import make_batches
    from eznas.ensemble import rank_average
    from eznas.spaces import build, get_space

    if (args.arch is None) == (args.archs is None):
        raise EznasError("give exactly one of --arch KEY or --archs FILE")
    if args.batch_size < 1:
        raise EznasError(f"--batch-size must be >= 1, got {args.batch_size}")
    names = list(dict.fromkeys(args.proxy))
    archs = [args.arch] if args.arch is not None else _read_archs(args.archs)
    sp = get_space(args.space)
    batches_by_scale: dict[float, Any] = {}
    runs = []
    for name in names:
        proxy = load_proxy(name, trust=args.trust)
        scale = _noise_scale_of(proxy)
        scale = 0.1 if scale is None else scale
        if scale not in batches_by_scale:
            batches_by_scale[scale] = make_batches(args.dataset, args.batch_size, args.seed,
                                                   num_classes=sp.num_classes(args.dataset), noise_scale=scale,
                                                   root=args.data_dir, size=sp.input_size(args.dataset))
        runs.append(_scorer(proxy, sp, args.dataset, batches_by_scale[scale]))
    rows: list[list[float]] = []
    bar = tqdm(archs, desc="scoring", unit="net", disable=args.archs is None, file=sys.stderr)
    for i, arch in enumerate(bar):
        try:
            model = build(args.space, arch, args.dataset, seed=args.seed)
        except EznasError as e:
            where = f"{args.archs} line {i + 1}: " if args.archs else ""
            raise EznasError(f"{where}{e}") from None
        rows.append([run(model) for run in runs])
    bar.close()
    if args.archs is None:
        for name, value in zip(names, rows[0]):
            print(f"{value:.10g}" if len(names) == 1 else f"{name}: {value:.10g}")
        return 0
    header = ["score"] if len(names) == 1 else [*names, "ensemble_rank"]
    table = np.asarray(rows, dtype=np.float64)
    if len(names) > 1:  # rank average over the given proxies, over the listed architectures
        table = np.column_stack([table, rank_average([table[:, j] for j in range(len(names))])])
    _write_csv(header, [(a, list(r)) for a, r in zip(archs, table)], args.out)
    return 0


def _write_csv(header: list[str], rows: list[tuple[str, list[float]]], out: str | None) -> None:
    def write(fh: Any) -> None:
        w = csv.writer(fh)
        w.writerow(["arch", *header])
        w.writerows([a, *(repr(float(v)) for v in vals)] for a, vals in rows)

    if out is None:
        write(sys.stdout)
        return
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        write(fh)
    print(f"scored {len(rows)} architectures -> {path}")
