"""``eznas nas``: zero-shot search over the NB201 table with any proxy, with a resumable score cache."""
from __future__ import annotations

import argparse
import os
import shlex
import stat
import sys
from pathlib import Path

from eznas.atomic import check_output
from eznas.errors import EznasError
from eznas.nas.cache import ScoreCache
from eznas.nas.strategies import search

CACHE_FILE = "scores.json"


def _check_out_dir(out: Path) -> None:
    """The output directory may exist (a directory, not a link) or be creatable; its files must be
    replaceable regular files."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise EznasError(f"--out {out} is a symbolic link; give a directory")
        if not stat.S_ISDIR(st.st_mode):
            raise EznasError(f"--out {out} exists and is not a directory")
        for name in (CACHE_FILE, "report.json", "report.md", "progress.png"):
            check_output(out / name, "output")
        return
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EznasError(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EznasError(f"--out {out}: directory {parent} is not writable")


def _validate(args: argparse.Namespace) -> None:
    from eznas.nas.nb201 import SPACE, check_dataset
    from eznas.spaces import get_space

    if args.budget < 1:
        raise EznasError(f"--budget must be >= 1, got {args.budget}")
    if args.batch_size < 1:
        raise EznasError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.strategy == "evolution":
        if args.population < 2:
            raise EznasError(f"--population must be >= 2, got {args.population}")
        if not 1 <= args.sample_size <= args.population:
            raise EznasError(f"--sample-size must be in 1..{args.population} (the population), got {args.sample_size}")
    if get_space(args.space).name != SPACE:  # raises for an unknown space
        raise EznasError(f"eznas nas needs a table of trained accuracies, which only {SPACE} has "
                         f"(NATS-Bench); for space '{args.space}' use the Python API eznas.nas.search")
    check_dataset(args.dataset)


def cmd_nas(args: argparse.Namespace) -> int:
    from eznas.nas.nb201 import TableSpace, load_proxies, make_scorers, proxy_specs
    from eznas.nas.report import build_report, summary_lines, write_all
    from eznas.natsbench import load_table

    _validate(args)
    from eznas.devices import resolve

    device = resolve(getattr(args, "device", None) or "auto", "--device")
    out = Path(args.out if args.out is not None else f"nas-{args.space}-{args.dataset}").expanduser()
    _check_out_dir(out)
    space = TableSpace(load_table(args.data_dir))
    if args.budget > len(space):
        raise EznasError(f"--budget {args.budget} exceeds the {len(space)} cells of the table")
    proxies = load_proxies(args.proxy, trust=args.trust)
    scorers = make_scorers(proxies, args.dataset, args.seed, args.batch_size, args.data_dir, device=device)
    cache = ScoreCache(out / CACHE_FILE) if (out / CACHE_FILE).exists() else None  # a bad cache: error now
    out.mkdir(parents=True, exist_ok=True)
    cache = cache or ScoreCache(out / CACHE_FILE)
    before = cache.count()
    try:
        result = search(scorers, space.archs, space.mutate, args.budget, args.seed, strategy=args.strategy,
                        population=args.population, sample_size=args.sample_size, cache=cache,
                        progress=not args.quiet)
    except KeyboardInterrupt:
        cache.flush()
        print(f"eznas: interrupted; {cache.count() - before} new proxy scores are saved in {out / CACHE_FILE} "
              f"({cache.count()} in all); run the same command again to resume", file=sys.stderr)
        return 130
    settings = {"command": "eznas nas " + shlex.join(_argv(args)), "space": args.space, "dataset": args.dataset,
                "strategy": args.strategy, "budget": args.budget, "seed": args.seed,
                "proxies": proxy_specs(proxies), "proxy_identities": [p[2] for p in proxies],
                "batch_size": args.batch_size, "population": args.population, "sample_size": args.sample_size}
    rep = build_report(result, space, args.dataset, settings)
    write_all(rep, out)
    for line in summary_lines(rep):
        print(line)
    print(f"report: {out / 'report.md'} (also report.json, progress.png; scores cached in {out / CACHE_FILE})")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    argv = [a for p in args.proxy for a in ("--proxy", p)]
    argv += ["--space", args.space, "--dataset", args.dataset, "--budget", str(args.budget), "--seed", str(args.seed),
             "--strategy", args.strategy, "--batch-size", str(args.batch_size)]
    if args.strategy == "evolution":
        argv += ["--population", str(args.population), "--sample-size", str(args.sample_size)]
    if args.out is not None:
        argv += ["--out", args.out]
    if args.data_dir is not None:
        argv += ["--data-dir", args.data_dir]
    if args.trust:
        argv.append("--trust")
    return argv
