"""The docstring of an exported proxy module: expression, LaTeX, provenance, settings, JSON block."""
from __future__ import annotations

import json
from typing import Any

import eznas
from eznas import runtime
from eznas.errors import EznasError
from eznas.export.loading import JSON_BEGIN, JSON_END, ProxySettings


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
    fam = ", ".join(f"{k}: {v}" for k, v in runtime.FAMILY_SEED.items())
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
        "    units         eznas-style ReLU-Conv-BN units, else every nn.Conv2d (see find_units)",
        f"    aggregation   {st.unit_aggregate} of the per-unit scores in float64; NaN if any unit's is not finite",
        "    precision     recorded in float32, then stored and read back as the search's cache does",
        f"                  ({st.cache_dtype} relative to a float32 scale per unit and tensor; see quantise)",
        f"    search batch  {st.batch_size} images; network width {st.width}, depth {st.depth} (None: the benchmark's)",
    ]


def _headline(prov: dict[str, Any]) -> str:
    if prov.get("kind") == "expression":
        return f"Zero-cost NAS proxy exported by eznas from an expression (settings of {prov.get('config')})."
    if prov.get("kind") == "builtin":
        return f"Zero-cost NAS proxy exported by eznas: the built-in evolved proxy {prov.get('name')}."
    return f"Zero-cost NAS proxy exported by eznas: rank {prov.get('rank')} of run {prov.get('run_dir')}."


def _origin_lines(prov: dict[str, Any]) -> list[str]:
    if prov.get("kind") == "expression":
        return ["    source            an expression given to `eznas export --expr`",
                f"    config            {prov.get('config')}",
                f"    seed              {prov.get('seed')}",
                f"    primitive set     {prov.get('primitive_set')}",
                f"    tasks             {', '.join(prov.get('tasks', []))}",
                f"    exported          {prov.get('exported')} by eznas {eznas.__version__}"]
    if prov.get("kind") == "builtin":
        return [*("    " + ln if ln else "" for ln in str(prov.get("description", "")).splitlines()),
                f"    exported          {prov.get('exported')} by eznas {eznas.__version__}"]
    return _provenance_lines(prov)


def docstring(meta: dict[str, Any], st: ProxySettings) -> str:
    prov = meta["provenance"]
    lines = [
        _headline(prov),
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
        *_origin_lines(prov),
        "",
        "Settings (the search's)",
        *_settings_lines(st),
        "",
        "Trust: `eznas.load_proxy(path)` never runs this file; it checks the SHA-256 on the last line",
        "and rebuilds the proxy from the JSON below with eznas' own primitives and runtime (the code",
        "below is that runtime, copied verbatim). Importing this file",
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
