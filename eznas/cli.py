"""``eznas <subcommand>``: one entry point; each subcommand lives in the module it drives.

Errors the user can fix (:class:`EznasError`) print as one line ``eznas: error: ...`` and exit 2.
Ctrl-C exits 130 after the running step has saved what it finished.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Callable, Sequence

from eznas.argtypes import OneLineParser, positive_int, seed_int
from eznas.errors import EznasError


def _lazy(module: str, func: str) -> Callable[[argparse.Namespace], int | None]:
    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), func)(args)

    return run


DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: config device)"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="eznas", description="Discover zero-cost NAS proxies with genetic programming.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="download or verify the benchmark data")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="fetch the NAS-Bench-Suite-Zero files and CIFAR-10 (checksummed)")
    dl.add_argument("--data-dir", default=None)
    dl.add_argument("--force", action="store_true", help="download again even if present")
    dl.set_defaults(func=_lazy("eznas.cli", "cmd_data_download"))
    dv = dsub.add_parser("verify", help="check which data files are present and intact")
    dv.add_argument("--data-dir", default=None)
    dv.set_defaults(func=_lazy("eznas.cli", "cmd_data_verify"))

    s = sub.add_parser("spaces", help="search-space tools")
    ssub = s.add_subparsers(dest="spaces_command", required=True, metavar="ACTION")
    sv = ssub.add_parser("verify", help="build every benchmark architecture and compare its parameter count")
    sv.add_argument("--space", required=True)
    sv.add_argument("--dataset", default=None, help="one task (default: every task of the space)")
    sv.add_argument("--limit", type=positive_int, default=None, help="check only the first N architectures per task")
    sv.add_argument("--data-dir", default=None)
    sv.set_defaults(func=_lazy("eznas.verify", "cmd_spaces_verify"))

    st = sub.add_parser("stats", help="build the statistics cache for a config's tasks")
    st.add_argument("config")
    st.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: config stats.workers)")
    st.add_argument("--device", default=None, help=DEVICE_HELP)
    st.add_argument("--backend", choices=["serial", "process", "ray"], default=None,
                    help="where the nets are computed (default: config stats.backend); ray joins RAY_ADDRESS")
    st.set_defaults(func=_lazy("eznas.stats", "cmd_stats"))

    ev = sub.add_parser("evolve", help="run a search (same as python -m eznas.evolve)")
    ev.add_argument("config")
    ev.add_argument("--resume", default=None, metavar="RUN_DIR")
    ev.add_argument("--run-dir", default=None, help="override the config's run_dir")
    ev.add_argument("--device", default=None, help=DEVICE_HELP + "; statistics and the after-search evaluation")
    ev.add_argument("--backend", choices=["serial", "process", "ray"], default=None,
                    help="statistics and search backend (default: config stats.backend, search.backend)")
    ev.set_defaults(func=_lazy("eznas.evolve", "cmd_evolve"))

    ea = sub.add_parser("evaluate", help="score proxies on a config's tasks and tabulate correlations")
    ea.add_argument("config")
    ea.add_argument("--proxies", nargs="*", default=None, help="names (baselines, built-in proxies), exported .py files or run directories")
    ea.add_argument("--published", action="store_true", help="also evaluate NASLib's published scores")
    ea.add_argument("--out", default=None, help="output directory (default: <run_dir>/evaluation)")
    ea.add_argument("--ensemble", action="store_true",
                    help="add the rank average of the evolved proxies as a column 'ensemble'")
    ea.add_argument("--device", default=None, help=DEVICE_HELP)
    ea.add_argument("--workers", type=positive_int, default=None, help="workers scoring nets (default: config evaluate.workers)")
    ea.set_defaults(func=_lazy("eznas.evaluate", "cmd_evaluate"))

    tr = sub.add_parser("transfer", help="score a finished run's hall of fame on another config's tasks")
    tr.add_argument("run_dir")
    tr.add_argument("config", help="config whose tasks and split sizes to score on")
    tr.add_argument("--split", choices=["evolve", "validate", "test"], default="test")
    tr.set_defaults(func=_lazy("eznas.transfer", "cmd_transfer"))

    ex = sub.add_parser("export", help="write an evolved proxy as a standalone module")
    ex.add_argument("run_dir", nargs="?", default=None,
                    help="run directory, or the name of a built-in evolved proxy (eznas proxies list)")
    ex.add_argument("--rank", type=positive_int, default=1)
    ex.add_argument("--expr", default=None, help="an expression (infix) to export instead of a run's program")
    ex.add_argument("--config", default=None, help="with --expr: the config whose statistics settings apply")
    ex.add_argument("--out", required=True)
    ex.set_defaults(func=_lazy("eznas.export.writing", "cmd_export"))

    px = sub.add_parser("proxies", help="the built-in evolved proxies and baselines")
    pxsub = px.add_subparsers(dest="proxies_command", required=True, metavar="ACTION")
    pl = pxsub.add_parser("list", help="list the built-in evolved proxies and the baselines")
    pl.set_defaults(func=_lazy("eznas.builtin_proxies.command", "cmd_proxies_list"))
    ps = pxsub.add_parser("show", help="expression, provenance, settings and test figures of a built-in proxy")
    ps.add_argument("name")
    ps.set_defaults(func=_lazy("eznas.builtin_proxies.command", "cmd_proxies_show"))

    sc = sub.add_parser("score", help="score architectures with a proxy")
    sc.add_argument("--proxy", required=True, action="append",
                    help="exported .py file, run directory, built-in proxy (eznas-nb201, ...) or baseline name; repeat it to score several proxies "
                         "and their rank-average ensemble (column ensemble_rank)")
    sc.add_argument("--space", required=True)
    sc.add_argument("--arch", default=None)
    sc.add_argument("--archs", default=None, help="file with one arch key per line")
    sc.add_argument("--dataset", default="cifar10")
    sc.add_argument("--out", default=None, help="CSV output for --archs")
    sc.add_argument("--seed", type=seed_int, default=0)
    sc.add_argument("--batch-size", type=positive_int, default=64)
    sc.add_argument("--data-dir", default=None)
    sc.add_argument("--trust", action="store_true", help="run the proxy file as Python (otherwise it is only parsed, never executed)")
    sc.add_argument("--device", default="auto", help=DEVICE_HELP.replace("config device", "auto"))
    sc.set_defaults(func=_lazy("eznas.export.score", "cmd_score"))

    n = sub.add_parser("nas", help="zero-shot architecture search with a proxy (NB201 table of trained accuracies)")
    n.add_argument("--proxy", required=True, action="append",
                   help="baseline or built-in proxy name, exported .py file or run directory; repeat it for their rank ensemble")
    n.add_argument("--space", default="nb201", help="search space (only nb201 has a table of trained accuracies)")
    n.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or ImageNet16-120")
    n.add_argument("--budget", type=positive_int, required=True, help="distinct cells to score (failures included)")
    n.add_argument("--seed", type=seed_int, default=0, help="search seed, also the network and batch seed")
    n.add_argument("--strategy", choices=["random", "evolution"], default="random")
    n.add_argument("--population", type=positive_int, default=20, help="evolution: population size")
    n.add_argument("--sample-size", type=positive_int, default=5, help="evolution: tournament size")
    n.add_argument("--batch-size", type=positive_int, default=64)
    n.add_argument("--out", default=None,
                   help="output directory (default nas-<space>-<dataset>); its score cache makes a rerun resume")
    n.add_argument("--data-dir", default=None)
    n.add_argument("--trust", action="store_true", help="run a proxy .py file as Python (otherwise only parsed)")
    n.add_argument("--quiet", action="store_true", help="no progress bar")
    n.add_argument("--device", default="auto", help=DEVICE_HELP.replace("config device", "auto"))
    n.set_defaults(func=_lazy("eznas.nas", "cmd_nas"))

    b = sub.add_parser("bench", help="build a small benchmark of your own")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    bb = bsub.add_parser("build", help="sample and train architectures, write a benchmark file")
    bb.add_argument("config")
    bb.add_argument("--workers", type=positive_int, default=None)
    bb.set_defaults(func=_lazy("eznas.benchbuild", "cmd_bench_build"))
    return p


def cmd_data_download(args: argparse.Namespace) -> int:
    from eznas import datadir

    datadir.download(args.data_dir, force=args.force)
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from eznas import datadir

    rows = datadir.verify(args.data_dir)
    print(f"data directory: {datadir.data_dir(args.data_dir)}")
    for name, status in rows:
        print(f"  {status:9s} {name}")
    bad = [n for n, s in rows if s in ("missing", "mismatch", "damaged")]
    if bad:
        print(f"{len(bad)} file(s) missing or corrupt; {datadir.DOWNLOAD_HINT}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, one line printed by OneLineParser)
        return e.code if isinstance(e.code, int) else 2
    if (getattr(args, "workers", None) or 0) > 1 and getattr(args, "backend", None) in (None, "process"):
        from eznas.fanout import start_worker_server  # imports no torch

        start_worker_server()  # workers' imports overlap with the command's own start-up
    try:
        rc = args.func(args)
    except EznasError as e:
        print(f"eznas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eznas: interrupted; finished work is saved", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"eznas: error: disk full{where}; files finished before it are kept", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
