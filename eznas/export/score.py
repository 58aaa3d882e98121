"""``eznas score``: score architectures of a search space with exported proxies, run directories
or baselines, on one batch of :func:`eznas.batches.make_batches` (the search's D, N and P for the
same ``--seed`` and ``--batch-size``, so an evolved proxy's score equals the search's own)."""
from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from eznas.atomic import atomic_write_text, check_output
from eznas.errors import EznasError
from eznas.export.loading import call_proxy, load_proxy, noise_scale_of
from eznas.proxies import is_set_level
from eznas.progress import progress

#: seconds between rewrites of the partial --out file while scoring
SAVE_EVERY_S = 5.0


def read_archs(path: str, space: Any) -> list[str]:
    """Every arch key of an --archs file (one per line; blank lines and ``#`` comments skipped),
    each checked by the space's parser before anything is scored; errors name the file's line."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EznasError(f"cannot read --archs file {path}: {getattr(e, 'strerror', None) or e}") from None
    archs = []
    for number, line in enumerate(lines, 1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        try:
            space.decode(key)
        except EznasError as e:
            raise EznasError(f"{path} line {number}: {e}") from None
        archs.append(key)
    if not archs:
        raise EznasError(f"--archs file {path} lists no architectures")
    return archs


def scorer(proxy: Callable[..., float], space: Any, dataset: str, batches: Any) -> Callable[[nn.Module], float]:
    from eznas.losses import space_loss

    loss = space_loss(space, dataset, batches.D, batches.targets, default_none=True)
    return lambda model: call_proxy(proxy, model, batches.D, batches.targets, loss_fn=loss, noise=batches.N,
                                    perturbed=batches.P)


def components_scorer(name: str, space: Any, dataset: str, batches: Any) -> Callable[[nn.Module], Any]:
    """One net's component scores of the set-level proxy ``name`` (a dict, combined later)."""
    from eznas.losses import space_loss
    from eznas.proxies import component_scores

    loss = space_loss(space, dataset, batches.D, batches.targets, default_none=True)
    return lambda model: component_scores(name, model, batches.D, batches.targets, loss_fn=loss)


def combine_set_level(rows: list[tuple[str, list[Any]]], names: list[str],
                      set_level: list[str]) -> list[tuple[str, list[float]]]:
    """Replace each set-level column's component dicts by its scores over all the rows."""
    from eznas.proxies import score_set

    cols = {n: score_set(n, [vals[names.index(n)] for _, vals in rows]) for n in set_level}
    return [(a, [cols[n][i] if n in cols else v for n, v in zip(names, vals)]) for i, (a, vals) in enumerate(rows)]


def _csv_text(header: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", *header])
    # a set-level column still holding component dicts (a partial save) is written as nan
    w.writerows([a, *(repr(float(v)) if not isinstance(v, dict) else "nan" for v in vals)] for a, vals in rows)
    return buf.getvalue()


def _save(out: Path, header: list[str], rows: list[tuple[str, list[float]]]) -> None:
    """Write the CSV atomically; if that fails, print it so nothing scored is lost, then one error."""
    text = _csv_text(header, rows)
    try:
        atomic_write_text(out, text)
    except EznasError as e:
        sys.stdout.write(text)
        raise EznasError(f"{e}; the {len(rows)} scored rows were printed to stdout instead") from None


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from eznas.batches import make_batches
    from eznas.ensemble import rank_average
    from eznas.spaces import build, get_space

    if (args.arch is None) == (args.archs is None):
        raise EznasError("give exactly one of --arch KEY or --archs FILE")
    if args.batch_size < 1:
        raise EznasError(f"--batch-size must be >= 1, got {args.batch_size}")
    protect = [Path(args.archs).expanduser()] if args.archs else []
    out = None if args.out is None else check_output(Path(args.out).expanduser(), "--out", protect=protect)
    sp = get_space(args.space)
    if args.arch is not None:
        sp.decode(args.arch)
        archs = [args.arch]
    else:
        archs = read_archs(args.archs, sp)
    names = list(dict.fromkeys(args.proxy))
    set_level = [n for n in names if is_set_level(n) and not Path(n).expanduser().exists()]
    if set_level and len(archs) < 2:
        raise EznasError(f"'{set_level[0]}' is a set-level proxy: it ranks architectures within the given set and "
                         f"has no score for a single one; give --archs FILE with at least 2 architectures")
    batches_by_scale: dict[float, Any] = {}
    runs = []
    for name in names:
        if name in set_level:
            if 0.1 not in batches_by_scale:
                batches_by_scale[0.1] = make_batches(args.dataset, args.batch_size, args.seed,
                                                     num_classes=sp.num_classes(args.dataset), root=args.data_dir,
                                                     size=sp.input_size(args.dataset))
            runs.append(components_scorer(name, sp, args.dataset, batches_by_scale[0.1]))
            continue
        proxy = load_proxy(name, trust=args.trust)
        scale = noise_scale_of(proxy)
        scale = 0.1 if scale is None else scale
        if scale not in batches_by_scale:
            batches_by_scale[scale] = make_batches(args.dataset, args.batch_size, args.seed,
                                                   num_classes=sp.num_classes(args.dataset), noise_scale=scale,
                                                   root=args.data_dir, size=sp.input_size(args.dataset))
        runs.append(scorer(proxy, sp, args.dataset, batches_by_scale[scale]))
    header = ["score"] if len(names) == 1 else list(names)
    rows: list[tuple[str, list[float]]] = []
    saved = time.monotonic()
    try:
        for arch in progress(archs, desc="scoring", unit="net", disable=args.archs is None):
            model = build(args.space, arch, args.dataset, seed=args.seed)
            rows.append((arch, [run(model) for run in runs]))
            if out is not None and time.monotonic() - saved > SAVE_EVERY_S:
                _save(out, header, rows)  # partial results: nothing scored is lost if we stop
                saved = time.monotonic()
    except KeyboardInterrupt:
        if out is not None and rows:
            _save(out, header, rows)
            print(f"interrupted: {len(rows)} of {len(archs)} architectures scored -> {out}", file=sys.stderr)
        raise
    if args.archs is None:
        for name, value in zip(names, rows[0][1]):
            print(f"{value:.10g}" if len(names) == 1 else f"{name}: {value:.10g}")
        return 0
    if set_level:
        rows = combine_set_level(rows, names, set_level)
        print(f"note: {', '.join(set_level)} ranks each architecture within the {len(archs)} given (a set-level "
              f"proxy: the sum of log(rank / N) of its components); scores change with the set", file=sys.stderr)
    table = np.asarray([r for _, r in rows], dtype=np.float64)
    if len(names) > 1:  # rank average over the given proxies, over the listed architectures
        table = np.column_stack([table, rank_average([table[:, j] for j in range(len(names))])])
        header = [*header, "ensemble_rank"]
    final = [(a, list(r)) for a, r in zip(archs, table)]
    if out is None:
        sys.stdout.write(_csv_text(header, final))
        return 0
    _save(out, header, final)
    print(f"scored {len(final)} architectures -> {out}")
    return 0
