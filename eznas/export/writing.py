"""Writing proxies: ``eznas export RUN_DIR [--rank K] --out proxy.py``, ``eznas export NAME --out
proxy.py`` (a built-in evolved proxy) and ``eznas export --expr EXPR --config CONFIG --out proxy.py``
(any expression, with the statistics settings of a config).

The module written needs only torch. It holds, in this order: its settings; the code of
:mod:`eznas.runtime` copied verbatim from the runtime's files (hooks, sketch indices, D / N / P
passes, the storage round trip, unit aggregation: the code the search itself records with); the
primitives the expression uses, copied from :mod:`eznas.primitives`; the expression (simplified
by :mod:`eznas.simplify`, provably equivalent) as straight-line torch code; and
``score(model, inputs, targets, loss_fn=None, noise=None, perturbed=None) -> float``. Its
docstring shows the raw and simplified infix, the LaTeX, the provenance and the settings, and
embeds them as a JSON block; its last line is the SHA-256 of everything above it. The run
directory gets ``best.txt`` (raw infix, one line), ``best.tex`` (LaTeX of the simplified form)
and ``best_simplified.txt`` for rank 1, ``rank<K>.*`` for another rank.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import datetime
import hashlib
import inspect
import math
import os
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import eznas
from eznas import block_linalg
from eznas import primitives as prim_mod
from eznas import runtime
from eznas import simplify as simp
from eznas.atomic import atomic_write_text, check_output
from eznas.errors import EznasError
from eznas.export.loading import FORMAT, HASH_PREFIX, MARKER, ProxySettings, Run, config_settings, load_run
from eznas.export.doc import docstring

#: modules the exported code may import: the standard library ones the runtime uses, and torch
_ALLOWED_IMPORTS = ("__future__", "collections", "dataclasses", "math", "typing", "torch")
_HEADER = ("from __future__ import annotations", "import math", "import torch", "import torch.nn.functional as F",
           "from torch import nn")


# ----------------------------------------------------------------------------- the runtime, verbatim
def runtime_sections() -> tuple[list[str], list[tuple[str, str]]]:
    """(import lines, [(file name, code)]) of :mod:`eznas.runtime`'s modules in embedding order:
    each file's docstring as comment lines, then its text after the docstring and imports,
    verbatim; imports within the runtime are dropped (the code is concatenated), the others
    collected for the module's header."""
    imports: list[str] = []
    sections = []
    folder = Path(runtime.__file__).parent
    for name in runtime.MODULES:
        path = folder / f"{name}.py"
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        end, doc = 0, ""
        for i, node in enumerate(ast.parse(text).body):
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                end, doc = node.end_lineno or end, str(node.value.value)  # the module docstring
                continue
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                break
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not all(m.split(".")[0] in _ALLOWED_IMPORTS or m.startswith("eznas.runtime") for m in mods):
                raise RuntimeError(f"{path}: the runtime may import only torch and the standard library ({mods})")
            if not any(m.startswith("eznas.runtime") for m in mods):
                imports.append("\n".join(lines[node.lineno - 1:node.end_lineno]))
            end = node.end_lineno or end
        comment = "\n".join(("# " + ln).rstrip() for ln in doc.strip().splitlines())
        sections.append((f"eznas/runtime/{name}.py", comment + "\n\n" + "\n".join(lines[end:]).strip()))
    return list(dict.fromkeys(ln for ln in imports if ln not in _HEADER)), sections


# ----------------------------------------------------------------------------- primitives and expression
#: modules besides eznas.primitives whose functions primitives call (torch-only; copied like them)
_KERNEL_MODULES = (block_linalg,)
_HELPER_MODULES = (prim_mod.__name__, *(m.__name__ for m in _KERNEL_MODULES))


def _defined_in(mod: Any, name: str) -> bool:
    value = vars(mod)[name]
    return getattr(value, "__module__", None) == mod.__name__


def _fn_source(obj: Any) -> str:
    """Source of a top-level function without its registration decorator."""
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
    """(constant lines, function sources, primitive name -> Python name) for ``names`` and their helpers
    (functions of :mod:`eznas.primitives` and of the kernel modules it imports, :data:`_HELPER_MODULES`)."""
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
            value = fn.__globals__.get(ident)
            if ident in funcs or ident in ("torch", "F", "math") or value is None or isinstance(value, type):
                continue
            if callable(value) and getattr(value, "__module__", None) in _HELPER_MODULES:
                todo.append(value)
            elif not callable(value) and not inspect.ismodule(value):
                consts[ident] = f"{ident} = {_literal(ident, value)}"
    # definition order: the kernel modules' helpers first, then the primitives module's
    order = [n for mod in (*_KERNEL_MODULES, prim_mod) for n in vars(mod)
             if n in funcs and _defined_in(mod, n)]
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
            code = f"v[:, {runtime.INDEX[node.name]}]"
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


_ENTRY = '''

def statistics(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable | None = None,
               noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """Sketched statistics (units, 22, R, s, s) of ``model`` on the batch, as the search stored them."""
    return proxy_statistics(SETTINGS, model, inputs, targets, loss_fn, noise, perturbed)


def unit_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable | None = None,
                noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> torch.Tensor:
    """The expression's score of every unit (units,)."""
    return proxy_unit_scores(program, SETTINGS, model, inputs, targets, loss_fn, noise, perturbed)


def score(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable | None = None,
          noise: torch.Tensor | None = None, perturbed: torch.Tensor | None = None) -> float:
    """The proxy's score of ``model`` on ``inputs`` / ``targets`` (one batch; higher: predicted better).

    ``loss_fn(output, targets)`` defaults to cross-entropy; ``noise`` / ``perturbed`` replace the
    seeded N and P. The model's mode, gradients and buffers are left as they were.
    """
    return proxy_score(program, SETTINGS, model, inputs, targets, loss_fn, noise, perturbed)
'''


def module_source(expr: simp.Expr, meta: dict[str, Any], st: ProxySettings) -> str:
    """The complete text of an exported proxy module, hash line included."""
    consts, prim_srcs, pyname = _primitive_sources(simp.primitives_used(expr))
    imports, runtime_code = runtime_sections()
    settings = [f"R = {st.R}", f"S = {st.s}", f"SEED = {st.seed}", f"NOISE_SCALE = {st.noise_scale!r}",
                f"UNIT_AGGREGATE = {st.unit_aggregate!r}", f"CACHE_DTYPE = {st.cache_dtype!r}",
                f"EXPRESSION = {meta['expression']!r}", f"SETTINGS = {_literal('SETTINGS', asdict(st))}"]
    sections = [("settings (as in the search)", "\n".join(settings))]
    sections += [(f"copied verbatim from {name}", code) for name, code in runtime_code]
    sections += [("primitives the expression uses (copied from eznas.primitives)",
                  "\n".join(consts) + "\n\n\n" + "\n\n\n".join(prim_srcs)),
                 ("the expression", program_source(expr, pyname) + _ENTRY)]
    head = f"{MARKER} {FORMAT} (written by `eznas export`; the last line is a SHA-256 of everything above it)\n"
    header = "\n".join([_HEADER[0], "", *_HEADER[1:], *imports]) + "\n"
    body = head + docstring(meta, st) + header + "".join(
        f"\n\n# {'-' * 64} {title}\n{text.strip()}\n" for title, text in sections)
    _check_names(body)
    return body + HASH_PREFIX + hashlib.sha256(body.encode("utf-8")).hexdigest() + "\n"


def _check_names(source: str) -> None:
    """Every top-level name is defined once and shadows no builtin the code relies on."""
    seen: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        for n in names:
            if n in seen or hasattr(builtins, n):
                raise EznasError(f"cannot export: the generated module would define {n!r} twice or shadow a builtin")
            seen.add(n)


# ----------------------------------------------------------------------------- eznas export
def _provenance(run: Run, rank: int, entry: dict[str, Any]) -> dict[str, Any]:
    c = run.cfg
    when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    return {"run_dir": str(run.path.resolve()), "config": str((run.path / "config.yaml").resolve()), "rank": rank,
            "seed": c.seed, "primitive_set": c.search.primitive_set,
            "tasks": [f"{t.space}/{t.dataset}" for t in c.tasks],
            "fitness": f"{c.search.fitness}, {c.search.aggregate} over tasks",
            "evolve": entry.get("evolve"), "validate": entry.get("validate"),
            "validate_per_task": entry.get("validate_per_task"), "test": entry.get("test"), "exported": when,
            "eznas_version": eznas.__version__}


#: files of a run directory that ``--out`` must never replace
RUN_FILES = ("config.yaml", "checkpoint.json", "timings.json", ".lock", "hall_of_fame.json", "log.csv", "fitness.png")


@dataclass
class ExportResult:
    out: Path
    raw: str
    simplified: str
    latex: str
    run_files: list[Path]


def export_proxy(run_dir: str | os.PathLike, out: str | os.PathLike, rank: int = 1) -> ExportResult:
    """Write hall-of-fame program ``rank`` of ``run_dir`` as a standalone module ``out``, and its
    infix and LaTeX into the run directory. ``out`` is checked before any work: not a symlink,
    directory or device, and none of the run's own files."""
    run = load_run(run_dir)
    entry = run.entry(rank)
    stem = "best" if rank == 1 else f"rank{rank}"
    files = [run.path / f"{stem}.txt", run.path / f"{stem}.tex", run.path / f"{stem}_simplified.txt"]
    out_path = check_output(Path(out).expanduser(), "--out",
                            protect=[run.path / f for f in RUN_FILES] + files)
    raw_text = " ".join(entry["infix"].split())
    expr = simp.simplify(simp.parse(raw_text))
    st = run.settings()
    meta = {"format": FORMAT, "expression": simp.to_infix(expr), "raw_expression": raw_text,
            "latex": simp.to_latex(expr), "settings": asdict(st), "provenance": _provenance(run, rank, entry)}
    atomic_write_text(out_path, module_source(expr, meta, st))
    for path, text in zip(files, (raw_text, meta["latex"], meta["expression"])):
        atomic_write_text(path, text + "\n")
    return ExportResult(out_path, raw_text, meta["expression"], meta["latex"], files)


def _write(out_path: Path, raw_text: str, expr: simp.Expr, st: ProxySettings, prov: dict[str, Any]) -> ExportResult:
    meta = {"format": FORMAT, "expression": simp.to_infix(expr), "raw_expression": raw_text,
            "latex": simp.to_latex(expr), "settings": asdict(st), "provenance": prov}
    atomic_write_text(out_path, module_source(expr, meta, st))
    return ExportResult(out_path, raw_text, meta["expression"], meta["latex"], [])


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def export_expression(text: str, config: str | os.PathLike, out: str | os.PathLike) -> ExportResult:
    """Write expression ``text`` (infix, parsed in the config's primitive set: an unknown name is one
    error line with its column) as a standalone module with the statistics settings of ``config``."""
    from eznas import config as config_mod
    from eznas import program

    out_path = check_output(Path(out).expanduser(), "--out")
    cfg_path = Path(config).expanduser()
    cfg = config_mod.load(cfg_path)
    raw_text = " ".join(str(text).split())
    parsed = program.parse_expression(raw_text, program.load_primitive_set(cfg.search.primitive_set))
    prov = {"kind": "expression", "config": str(cfg_path.resolve()), "seed": cfg.seed,
            "primitive_set": cfg.search.primitive_set, "tasks": [f"{t.space}/{t.dataset}" for t in cfg.tasks],
            "exported": _now(), "eznas_version": eznas.__version__}
    return _write(out_path, raw_text, simp.simplify(parsed), config_settings(cfg), prov)


def export_builtin(name: str, out: str | os.PathLike) -> ExportResult:
    """Write built-in evolved proxy ``name`` (:mod:`eznas.builtin_proxies`) as a standalone module."""
    from eznas import builtin_proxies

    out_path = check_output(Path(out).expanduser(), "--out")
    b = builtin_proxies.read(name)
    if b.primitive_set == "hybrid":
        raise EznasError(f"built-in proxy {name} is a hybrid (an expression over proxy scores, eznas.hybrid_proxy); "
                         f"export writes evolved programs only: use eznas.load_proxy({name!r})")
    proxy = builtin_proxies.load(name)
    prov = {"kind": "builtin", "name": name, "description": builtin_proxies.describe(name), "exported": _now(),
            "eznas_version": eznas.__version__, "provenance": b.provenance, "test": b.test}
    return _write(out_path, b.expression, proxy.expression, proxy.settings, prov)


def cmd_export(args: argparse.Namespace) -> int:
    from eznas import builtin_proxies

    if args.expr is not None:
        if args.run_dir is not None:
            raise EznasError("give either a run directory / built-in proxy or --expr, not both")
        if args.config is None:
            raise EznasError("--expr needs --config CONFIG (its statistics settings and primitive set)")
        res = export_expression(args.expr, args.config, args.out)
        print(f"exported the expression with the settings of {args.config} -> {res.out}")
    elif args.run_dir is None:
        raise EznasError("give a run directory, a built-in proxy name (eznas proxies list) or --expr EXPR")
    elif args.config is not None:
        raise EznasError("--config goes with --expr only (a run directory carries its own config)")
    elif not Path(args.run_dir).expanduser().exists() and args.run_dir.startswith(builtin_proxies.PREFIX):
        if args.rank != 1:
            raise EznasError("--rank applies to run directories, not to a built-in proxy")
        res = export_builtin(args.run_dir, args.out)
        print(f"exported built-in proxy {args.run_dir} -> {res.out}")
    else:
        res = export_proxy(args.run_dir, args.out, args.rank)
        print(f"exported rank {args.rank} of {args.run_dir} -> {res.out}")
    print(f"  raw:        {res.raw}")
    print(f"  simplified: {res.simplified}")
    print(f"  LaTeX:      {res.latex}")
    if res.run_files:
        print(f"  wrote {', '.join(str(p) for p in res.run_files)}")
    return 0
