"""YAML configuration -> validated, typed dataclasses.

Every section is a dataclass; unknown keys, wrong types and impossible values raise
:class:`EznasError` with the dotted key that is wrong, so the CLI can print one clear line.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eznas.errors import EznasError


@dataclass
class TaskConfig:
    space: str = "nb201"
    dataset: str = "cifar10"
    benchmark: str | None = None  # naslib (default) | natsbench | digits | path of a benchmark .json file


@dataclass
class SplitConfig:
    evolve: int = 80
    validate: int = 40
    test: int = 200


@dataclass
class NetworkConfig:
    width: int | None = None  # channel override (None: the benchmark's)
    depth: int | None = None  # cells per stage / stacks override (None: the benchmark's)


@dataclass
class StatsConfig:
    batch_size: int = 64
    R: int = 16  # blocks per tensor
    s: int = 8  # block side
    dtype: str = "float16"
    noise_scale: float = 0.1  # P = D + noise_scale * N(0, 1)
    workers: int = 1
    backend: str = "process"  # serial | process | ray (eznas.fanout); process with workers 1 runs serially
    cache_dir: str | None = None  # default: <data_dir>/../eznas-cache or ~/.cache/eznas/stats


@dataclass
class SearchConfig:
    primitive_set: str = "eznas"
    population: int = 50  # mu
    offspring: int = 50  # lambda
    generations: int = 20
    cxpb: float = 0.5
    mutpb: float = 0.4
    selection: str = "best"  # survivors of (mu + lambda): best | tournament | double_tournament
    tournament: int = 4  # tournament size (selection tournament / double_tournament)
    parsimony: float = 1.4  # double_tournament: size tournament in [1, 2] (DEAP's parsimony_size)
    max_depth: int = 10
    init_min_depth: int = 2
    init_max_depth: int = 5
    fitness: str = "kendall"  # kendall | spearman
    aggregate: str = "min"  # min | mean
    subsample: int | None = 20  # nets per task per generation (None: all evolve nets)
    patience: int | None = 10  # generations without validation improvement before stopping
    hall_of_fame: int = 10
    unit_aggregate: str = "mean"  # mean | sum | median over units
    seed: int | None = None  # seed of the GP alone (None: the top-level seed); splits/statistics keep theirs
    backend: str = "serial"  # serial | process | ray
    workers: int = 2


@dataclass
class EvaluateConfig:
    split: str = "test"
    proxies: list[str] = field(default_factory=lambda: ["params", "flops", "synflow", "snip", "nwot", "zico"])
    published: bool = False
    batch_size: int = 64
    after_search: bool = False  # evolve: export the best program and evaluate it beside the proxies
    ensemble: bool = False  # add a column: rank average of the evolved proxies (.py files / run directories)
    backend: str = "process"  # serial | process | ray: baseline scoring, one net per job (eznas.score_fanout)
    workers: int = 1


@dataclass
class BenchConfig:
    """``eznas bench build``: sample ``archs`` architectures of ``space`` (seeded by the top-level
    ``seed``), train each once per training seed on ``dataset``, write the benchmark to ``out``."""

    space: str = "nb201"
    dataset: str = "digits"  # a name of eznas.images: digits, cifar10, cifar100, ImageNet16-120, or npz:PATH
    archs: int = 150
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    width: int | None = 8  # None: the space's default
    depth: int | None = 1  # None: the space's default
    out: str = "benchmarks/bench.json"
    workers: int = 1


@dataclass
class Config:
    seed: int = 0
    data_dir: str | None = None
    run_dir: str = "runs/default"
    tasks: list[TaskConfig] = field(default_factory=lambda: [TaskConfig()])
    split: SplitConfig = field(default_factory=SplitConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (eznas.devices): statistics, baselines, score, nas
    ray_address: str | None = None  # an existing Ray cluster (else RAY_ADDRESS, else a private local Ray)
    source: str | None = None  # the YAML file this came from


CHOICES: dict[str, tuple[str, ...]] = {
    "stats.dtype": ("float16", "float32"),
    "search.fitness": ("kendall", "spearman"),
    "search.aggregate": ("min", "mean"),
    "search.selection": ("best", "tournament", "double_tournament"),
    "search.backend": ("serial", "process", "ray"),
    "stats.backend": ("serial", "process", "ray"),
    "evaluate.backend": ("serial", "process", "ray"),
    "search.unit_aggregate": ("mean", "sum", "median"),
    "evaluate.split": ("evolve", "validate", "test"),
}

POSITIVE: tuple[str, ...] = (
    "stats.batch_size", "stats.R", "stats.s", "stats.workers",
    "search.population", "search.offspring", "search.generations", "search.tournament",
    "search.max_depth", "search.init_min_depth", "search.init_max_depth", "search.hall_of_fame",
    "search.workers", "search.patience", "network.width", "network.depth",
    "evaluate.batch_size", "bench.archs", "bench.epochs", "bench.batch_size", "bench.width", "bench.depth",
    "bench.workers", "evaluate.workers",
)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except EznasError as e:
                errors.append(str(e))
        raise EznasError(errors[0] if errors else f"config key '{key}': bad value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise EznasError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EznasError(f"config key '{key}': expected a number, got {value!r}")
        try:
            if math.isfinite(value):
                return float(value)
        except OverflowError:  # an integer too large for a float
            pass
        raise EznasError(f"config key '{key}': expected a finite number, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EznasError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise EznasError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise EznasError(f"config key '{key}': expected a string, got {value!r}")
        return value
    raise EznasError(f"config key '{key}': unsupported type {_type_name(tp)}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EznasError(f"config key '{prefix or 'top level'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f" in '{prefix}'" if prefix else ""
        raise EznasError(f"unknown config key '{unknown[0]}'{where}; valid keys: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(data[name], hints[name], key)
    return cls(**kwargs)


def _get(cfg: Config, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Config) -> Config:
    """Check values that types alone do not catch; raise EznasError naming the key."""
    for key, choices in CHOICES.items():
        v = _get(cfg, key)
        if v not in choices:
            raise EznasError(f"config key '{key}': {v!r} is not one of {', '.join(choices)}")
    for key in POSITIVE:
        v = _get(cfg, key)
        if v is not None and v < 1:
            raise EznasError(f"config key '{key}': must be >= 1, got {v}")
    _validate_ranges(cfg)
    for key in ("search.cxpb", "search.mutpb"):
        v = _get(cfg, key)
        if not 0.0 <= v <= 1.0:
            raise EznasError(f"config key '{key}': must be in [0, 1], got {v}")
    s = cfg.search
    if s.cxpb + s.mutpb > 1.0:
        raise EznasError(f"config keys 'search.cxpb' + 'search.mutpb' must be <= 1 (varOr), got {s.cxpb + s.mutpb}")
    if s.offspring < s.population:
        raise EznasError(
            f"config key 'search.offspring': (mu+lambda) needs lambda >= mu, got lambda={s.offspring} < mu={s.population}"
        )
    if not 1.0 <= s.parsimony <= 2.0:
        raise EznasError(f"config key 'search.parsimony': must be in [1, 2], got {s.parsimony}")
    if s.init_min_depth > s.init_max_depth:
        raise EznasError("config key 'search.init_min_depth': must be <= search.init_max_depth")
    if s.init_max_depth > s.max_depth:
        raise EznasError("config key 'search.init_max_depth': must be <= search.max_depth")
    if s.tournament > s.population:
        raise EznasError(f"config key 'search.tournament': {s.tournament} exceeds the population {s.population}")
    if cfg.stats.noise_scale < 0:
        raise EznasError("config key 'stats.noise_scale': must be >= 0")
    if not cfg.tasks:
        raise EznasError("config key 'tasks': at least one task is needed")
    _validate_benchmarks(cfg.tasks)
    _validate_bench(cfg.bench)
    from eznas.devices import check_name  # local: devices imports torch

    check_name(cfg.device, "config key 'device':")
    if cfg.ray_address is not None and not cfg.ray_address.strip():
        raise EznasError("config key 'ray_address': give host:port, ray://host:port or auto, or leave it out")
    return cfg


#: seeds feed numpy, torch and random generators: whole numbers in [0, 2**32)
SEED_LIMIT = 2**32
#: sketch limits: feature maps are at most 32 x 32, and one unit's tensor stays <= 1 MiB (float32)
SKETCH_MAX_S, SKETCH_MAX_R, SKETCH_MAX_CELLS = 64, 4096, 2**18


def check_seed(value: int, key: str) -> None:
    if not 0 <= value < SEED_LIMIT:
        raise EznasError(f"config key '{key}': a seed must be in [0, 2**32), got {value}")


def _validate_ranges(cfg: Config) -> None:
    """Seeds, split sizes a correlation can use, and sketch sizes."""
    check_seed(cfg.seed, "seed")
    if cfg.search.seed is not None:
        check_seed(cfg.search.seed, "search.seed")
    for key in ("split.evolve", "search.subsample"):  # a rank correlation needs 2 nets
        v = _get(cfg, key)
        if v is not None and v < 2:
            raise EznasError(f"config key '{key}': must be >= 2 (a rank correlation needs two nets), got {v}")
    if cfg.split.validate < 1:  # a search needs 2 (eznas.evolve checks); a transfer target may use 1
        raise EznasError(f"config key 'split.validate': must be >= 1 (validation picks the best program), "
                         f"got {cfg.split.validate}")
    if cfg.split.test < 0 or cfg.split.test == 1:
        raise EznasError(f"config key 'split.test': must be 0 (no held-out report) or >= 2, got {cfg.split.test}")
    st = cfg.stats
    if st.s > SKETCH_MAX_S:
        raise EznasError(f"config key 'stats.s': the block side must be <= {SKETCH_MAX_S}, got {st.s}")
    if st.R > SKETCH_MAX_R:
        raise EznasError(f"config key 'stats.R': must be <= {SKETCH_MAX_R}, got {st.R}")
    if st.R * st.s * st.s > SKETCH_MAX_CELLS:
        raise EznasError(f"config keys 'stats.R' * 'stats.s'**2 must be <= {SKETCH_MAX_CELLS} values per tensor, "
                         f"got {st.R * st.s * st.s}")


def _validate_benchmarks(tasks: list[TaskConfig]) -> None:
    from eznas.records import check_benchmark  # local: records imports torch via the spaces

    for i, tc in enumerate(tasks):
        check_benchmark(tc.benchmark, f"config key 'tasks[{i}].benchmark'")


def _validate_bench(b: BenchConfig) -> None:
    if not b.seeds:
        raise EznasError("config key 'bench.seeds': at least one training seed is needed")
    if len(set(b.seeds)) != len(b.seeds) or min(b.seeds) < 0 or max(b.seeds) >= SEED_LIMIT:
        raise EznasError(f"config key 'bench.seeds': seeds must be distinct and in [0, 2**32), got {b.seeds}")
    if not b.lr > 0:
        raise EznasError(f"config key 'bench.lr': must be > 0, got {b.lr}")
    if b.weight_decay < 0:
        raise EznasError(f"config key 'bench.weight_decay': must be >= 0, got {b.weight_decay}")
    if not b.out.strip():
        raise EznasError("config key 'bench.out': a file path is needed")


def from_dict(data: Any, source: str | None = None) -> Config:
    cfg = _build(Config, data, "")
    cfg.source = source
    return validate(cfg)


def resolve_paths(cfg: Config, base: Path) -> Config:
    """Resolve the config's relative *input* paths against ``base`` (the config file's directory):
    ``data_dir``, ``tasks[].benchmark`` paths, ``npz:PATH`` datasets and ``bench.out`` (a benchmark
    file that ``tasks[].benchmark`` may name). Where results go (``run_dir``, ``stats.cache_dir``)
    stays relative to the working directory."""
    from eznas.records import is_benchmark_path

    def res(path: str) -> str:
        q = Path(path).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    def res_dataset(name: str) -> str:
        return f"npz:{res(name[4:])}" if name.startswith("npz:") and len(name) > 4 else name

    if cfg.data_dir:
        cfg.data_dir = res(cfg.data_dir)
    for tc in cfg.tasks:
        if tc.benchmark is not None and is_benchmark_path(tc.benchmark):
            tc.benchmark = res(tc.benchmark)
        tc.dataset = res_dataset(tc.dataset)
    cfg.bench.dataset = res_dataset(cfg.bench.dataset)
    cfg.bench.out = res(cfg.bench.out)
    return cfg


def load(path: str | Path) -> Config:
    """Read a YAML config; its relative input paths resolve against its directory (:func:`resolve_paths`)."""
    p = Path(path)
    if not p.is_file():
        raise EznasError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise EznasError(f"config file {p} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EznasError(f"cannot read config file {p}: {getattr(e, 'strerror', None) or e}") from None
    if data is None:
        raise EznasError(f"config file {p} is empty; write at least the tasks (see configs/quickstart.yaml)")
    return resolve_paths(from_dict(data, source=str(p)), p.resolve().parent)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
