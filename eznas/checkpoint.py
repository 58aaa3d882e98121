"""The search's state on disk: ``checkpoint.json`` (deterministic) and ``timings.json`` (wall clock).

``checkpoint.json`` holds only what a seed determines -- generation, population, fitness, hall of
fame, RNG states and the per-generation log without its timing columns -- so two runs of the same
config and seed write byte-identical checkpoints in any process. Wall-clock figures (seconds per
generation, programs per second, the search's total seconds) go to ``timings.json``; ``log.csv``
joins both. Both files are our own JSON (no pickle), written atomically; a checkpoint that does
not read back as a valid state (truncated, edited, a damaged RNG state) is one error line.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas.atomic import atomic_write_text
from eznas.errors import EznasError

CHECKPOINT = "checkpoint.json"
TIMINGS = "timings.json"
#: log columns that measure wall-clock time (kept out of checkpoint.json)
TIMING_FIELDS = ("evals_per_s", "seconds")


@dataclass
class RunState:
    gen: int
    population: list[str]
    fitness: list[float]
    hall: list[dict[str, Any]] = field(default_factory=list)
    best_validate: float = -math.inf
    stale: int = 0
    py_rng: Any = None
    np_rng: Any = None
    log: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    evals: int = 0
    done: bool = False


def _py_state_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _py_state_from_json(obj: Any) -> tuple:
    """The :func:`random.getstate` tuple; ValueError / TypeError if ``obj`` is not one."""
    if not isinstance(obj, list) or len(obj) != 3 or not isinstance(obj[1], list):
        raise ValueError("py_rng is not [version, state, gauss]")
    state = (obj[0], tuple(obj[1]), obj[2])
    try:
        random.Random().setstate(state)  # raises on a wrong length, type or value
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"py_rng: {e}") from None
    return state


def _check_np_state(obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise ValueError("np_rng is not a mapping")
    try:
        np.random.default_rng().bit_generator.state = obj  # raises on a wrong generator or state
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise ValueError(f"np_rng: {e}") from None
    return obj


def save_checkpoint(run_dir: Path, st: RunState) -> None:
    """Write ``timings.json`` then ``checkpoint.json`` (each atomically)."""
    timings = {"seconds": st.seconds,
               "generations": [{"gen": r["gen"], **{k: r[k] for k in TIMING_FIELDS if k in r}} for r in st.log]}
    atomic_write_text(run_dir / TIMINGS, json.dumps(timings))
    log = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in st.log]
    obj = {"gen": st.gen, "population": st.population, "fitness": st.fitness, "hall": st.hall,
           "best_validate": st.best_validate, "stale": st.stale, "py_rng": _py_state_to_json(st.py_rng),
           "np_rng": st.np_rng, "log": log, "evals": st.evals, "done": st.done}
    atomic_write_text(run_dir / CHECKPOINT, json.dumps(obj))


def _read_timings(run_dir: Path) -> tuple[float, dict[int, dict[str, float]]]:
    """Total seconds and timing columns per generation; zeros / NaN when the file is gone or bad
    (timings never block a resume)."""
    try:
        o = json.loads((run_dir / TIMINGS).read_text())
        per = {int(r["gen"]): {k: float(r[k]) for k in TIMING_FIELDS if k in r} for r in o["generations"]}
        return float(o["seconds"]), per
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0, {}


def _ints(obj: Any, what: str, low: int = 0) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int) or obj < low:
        raise ValueError(f"{what} is not an integer >= {low}")
    return obj


def _state_from(o: Any, run_dir: Path) -> RunState:
    if not isinstance(o, dict):
        raise ValueError("not a mapping")
    pop, fit = o["population"], o["fitness"]
    if not isinstance(pop, list) or not all(isinstance(s, str) for s in pop) or not pop:
        raise ValueError("population is not a list of programs")
    if not isinstance(fit, list) or len(fit) != len(pop) or \
            not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fit):
        raise ValueError("fitness does not match the population")
    hall, log = o["hall"], o["log"]
    if not isinstance(hall, list) or not all(isinstance(h, dict) and isinstance(h.get("infix"), str)
                                             and isinstance(h.get("validate"), (int, float)) for h in hall):
        raise ValueError("hall of fame is damaged")
    if not isinstance(log, list) or not all(isinstance(r, dict) and "gen" in r for r in log):
        raise ValueError("log is damaged")
    seconds, per_gen = _read_timings(run_dir)
    if "seconds" in o:  # a checkpoint written before timings.json existed
        seconds = float(o["seconds"])
    rows = [{**r, **{k: per_gen.get(r["gen"], {}).get(k, r.get(k, math.nan)) for k in TIMING_FIELDS}} for r in log]
    best = o["best_validate"]
    if isinstance(best, bool) or not isinstance(best, (int, float)):
        raise ValueError("best_validate is not a number")
    return RunState(_ints(o["gen"], "gen"), pop, [float(f) for f in fit], hall, float(best),
                    _ints(o["stale"], "stale"), _py_state_from_json(o["py_rng"]), _check_np_state(o["np_rng"]),
                    rows, seconds, _ints(o["evals"], "evals"), bool(o["done"]))


def load_checkpoint(run_dir: Path) -> RunState:
    """The state saved in ``run_dir``; :class:`EznasError` (one line) if there is none or it is damaged."""
    p = run_dir / CHECKPOINT
    if not p.is_file():
        raise EznasError(f"no checkpoint in {run_dir}; cannot resume")
    try:
        return _state_from(json.loads(p.read_text()), run_dir)
    except (OSError, UnicodeDecodeError) as e:
        raise EznasError(f"cannot read checkpoint {p}: {getattr(e, 'strerror', None) or e}") from None
    except (ValueError, KeyError, TypeError, IndexError, OverflowError) as e:
        why = f"{e.__class__.__name__}: {e}".splitlines()[0][:160]
        raise EznasError(f"checkpoint {p} is damaged ({why}); cannot resume -- "
                         f"start a new run (another run_dir) instead") from None
