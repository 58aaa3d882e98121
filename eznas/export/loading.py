"""Loading proxies: the file format's checks, the trust model, run directories, baselines by name.

By default nothing from a proxy file is executed: the file must carry the eznas marker on its
first line and a SHA-256 of its content on its last line that matches, and :func:`load_proxy`
then *parses* the embedded JSON (expression + settings, validated and bounded) and rebuilds the
proxy in-process from eznas' own primitives and :mod:`eznas.runtime`. Any edit, and any file not
written by ``eznas export``, is refused with a one-line error. ``trust=True`` (``eznas score
--trust``) instead imports the file as Python, i.e. runs its code, wherever it lives: only do
that for files you wrote or reviewed. The hash guards against accidental edits and wrong files,
not against an attacker (who can recompute it); safety comes from never executing a file unless
you opt in. :func:`load_run_proxies` reads a run directory's ``config.yaml`` (safe YAML) and
``hall_of_fame.json`` the same way.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eznas import primitives as prim_mod
from eznas import runtime
from eznas import simplify as simp
from eznas.errors import EznasError

FORMAT = 1
MARKER = "# eznas-proxy: format"
HASH_PREFIX = "# eznas-sha256: "
JSON_BEGIN = "EZNAS-PROXY-JSON-BEGIN"
JSON_END = "EZNAS-PROXY-JSON-END"
MAX_FILE_BYTES = 4 * 2**20
#: most sketch values per tensor a parsed proxy file may ask for (bounds the memory it can make us use)
MAX_SKETCH = 2**16
_TRUST_HINT = "; pass trust=True (eznas score --trust) to run it as Python if you trust it"


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
    cache_dtype: str = "float32"  # how the search stored statistics; proxies apply the same round trip

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
        if got.get("unit_aggregate", "mean") not in runtime.UNIT_AGGREGATES:
            raise EznasError(f"{where}: setting 'unit_aggregate' must be one of {', '.join(runtime.UNIT_AGGREGATES)}")
        if got.get("cache_dtype", "float32") not in runtime.STORAGE_DTYPES:
            raise EznasError(f"{where}: setting 'cache_dtype' must be one of {', '.join(runtime.STORAGE_DTYPES)}")
        return cls(**got)


class Proxy:
    """An evolved proxy evaluated in-process with eznas' primitives (nothing from a file is run).

    ``proxy(model, inputs, targets, loss_fn=None, noise=None, perturbed=None) -> float`` runs the
    same :mod:`eznas.runtime` code as the ``score`` function of the module ``eznas export`` writes.
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

    def _run(self, entry: Callable[..., Any], *args: Any) -> Any:
        try:
            return entry(*args)
        except ValueError as e:
            if str(e).startswith("eznas proxy:"):
                raise EznasError(f"{self.name}: {str(e)[len('eznas proxy: '):]}") from None
            raise

    def statistics(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                   perturbed: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(runtime.proxy_statistics, asdict(self.settings), model, inputs, targets, loss_fn, noise,
                         perturbed)

    def unit_scores(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                    perturbed: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(runtime.proxy_unit_scores, self.program, asdict(self.settings), model, inputs, targets,
                         loss_fn, noise, perturbed)

    def __call__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 loss_fn: Callable | None = None, noise: torch.Tensor | None = None,
                 perturbed: torch.Tensor | None = None) -> float:
        return self._run(runtime.proxy_score, self.program, asdict(self.settings), model, inputs, targets,
                         loss_fn, noise, perturbed)

    def score_statistics(self, values: torch.Tensor) -> float:
        """The network's score from statistics :meth:`statistics` recorded (what ``__call__`` does
        after recording them), so proxies with equal settings can share one recording."""
        return self._run(lambda v: float(runtime.aggregate_net(runtime.program_scores(self.program, v),
                                                               self.settings.unit_aggregate)), values)

    def __repr__(self) -> str:
        return f"Proxy({self.name!r}, {self.infix!r})"


# ----------------------------------------------------------------------------- run directories
@dataclass
class Run:
    """A finished run directory: its config and hall of fame."""

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
        return config_settings(self.cfg)


def config_settings(c: Any) -> ProxySettings:
    """The proxy settings of a config (:class:`eznas.config.Config`): its statistics and unit aggregation."""
    return ProxySettings(R=c.stats.R, s=c.stats.s, seed=c.seed, noise_scale=float(c.stats.noise_scale),
                         unit_aggregate=c.search.unit_aggregate, batch_size=c.stats.batch_size,
                         width=c.network.width, depth=c.network.depth, cache_dtype=c.stats.dtype)


def load_run(run_dir: str | os.PathLike) -> Run:
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
    return Run(path, cfg, hall)


def load_run_proxies(run_dir: str | os.PathLike) -> dict[str, Proxy]:
    """The hall of fame of a run as in-process proxies ``{"rank1": ..., "rank2": ...}``, best first."""
    run = load_run(run_dir)
    st = run.settings()
    out: dict[str, Proxy] = {}
    for k in range(1, len(run.hall) + 1):
        infix = run.entry(k)["infix"]
        expr = simp.simplify(simp.parse(infix))
        out[f"rank{k}"] = Proxy(f"{run.path.name}:rank{k}", expr, st, raw=infix, source=str(run.path))
    return out


# ----------------------------------------------------------------------------- proxy files
def read_proxy_file(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON block of an exported proxy file, after checking its marker and SHA-256 (no code runs)."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EznasError(f"cannot read proxy file {p}: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise EznasError(f"proxy file {p} is larger than {MAX_FILE_BYTES // 2**20} MiB{_TRUST_HINT}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EznasError(f"proxy file {p} is not UTF-8 text") from None
    if not text.startswith(f"{MARKER} {FORMAT} "):
        raise EznasError(f"{p} is not a proxy written by `eznas export` (no format-{FORMAT} marker){_TRUST_HINT}")
    body, _, last = text.rstrip("\n").rpartition("\n")
    m = re.fullmatch(re.escape(HASH_PREFIX) + r"([0-9a-f]{64})", last.strip())
    if m is None or hashlib.sha256((body + "\n").encode("utf-8")).hexdigest() != m.group(1):
        raise EznasError(f"{p} was modified after `eznas export` (SHA-256 mismatch){_TRUST_HINT}")
    start, end = body.find("\n" + JSON_BEGIN + "\n"), body.find("\n" + JSON_END + "\n")
    if start < 0 or end < start:
        raise EznasError(f"{p} has no {JSON_BEGIN} block{_TRUST_HINT}")
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


# ----------------------------------------------------------------------------- dispatch
def proxy_kind(path_or_name: str | os.PathLike) -> str:
    """What a proxy argument names: ``"file"``, ``"run"`` (a run directory), ``"builtin"`` (a
    built-in evolved proxy, :mod:`eznas.builtin_proxies`) or ``"baseline"``; a one-line error for
    a missing path or an unknown name."""
    spec = os.fspath(path_or_name)
    path = Path(spec).expanduser()
    if path.is_file():
        return "file"
    if path.is_dir():
        return "run"
    from eznas import builtin_proxies
    from eznas.proxies import get_proxy, proxy_names

    if builtin_proxies.is_builtin(spec):
        return "builtin"
    if spec.startswith(builtin_proxies.PREFIX) and spec not in proxy_names():
        builtin_proxies.read(spec)  # raises the unknown-name error listing the built-in proxies

    if spec in proxy_names():
        return "baseline"
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        raise EznasError(f"proxy file or run directory not found: {spec}")
    try:
        get_proxy(spec)  # raises the unknown-name error listing the valid names
    except EznasError as e:
        raise EznasError(f"{e}; built-in evolved proxies: {', '.join(builtin_proxies.names()) or 'none'}") from None
    return "baseline"


def load_proxy(path_or_name: str | os.PathLike, trust: bool = False) -> Callable[..., float]:
    """A proxy ``(model, inputs, targets, loss_fn=None, ...) -> float`` from:

    - the name of a built-in baseline (:mod:`eznas.proxies`), e.g. ``"synflow"``;
    - the name of a built-in evolved proxy (:mod:`eznas.builtin_proxies`), e.g. ``"eznas-nb201"``;
    - a file written by ``eznas export``: parsed, never executed (see the module docstring);
      with ``trust=True`` any ``.py`` file defining ``score`` is imported and its ``score`` returned;
    - a run directory: its rank-1 hall-of-fame program (:func:`load_run_proxies` gives them all).
    """
    kind = proxy_kind(path_or_name)
    spec = os.fspath(path_or_name)
    if kind == "file":
        path = Path(spec).expanduser()
        return _trusted_module(path) if trust else _parsed_file_proxy(path)
    if kind == "run":
        return next(iter(load_run_proxies(spec).values()))
    if kind == "builtin":
        from eznas import builtin_proxies

        return builtin_proxies.load(spec)
    from eznas.proxies import get_proxy

    return get_proxy(spec)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_proxy(proxy: Callable[..., Any], model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
               **optional: Any) -> float:
    """``proxy(model, inputs, targets, ...)`` with those of the ``optional`` keyword arguments
    (``loss_fn``, ``noise``, ``perturbed``) that are not None and that the proxy accepts."""
    kwargs = {k: v for k, v in optional.items() if v is not None and _accepts(proxy, k)}
    return float(proxy(model, inputs, targets, **kwargs))


def noise_scale_of(proxy: Callable[..., Any]) -> float | None:
    """The noise scale an evolved proxy was searched with (None for baselines and foreign code)."""
    if isinstance(proxy, Proxy):
        return proxy.noise_scale
    value = getattr(proxy, "__globals__", {}).get("NOISE_SCALE")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
