"""The search: reproducible, resumable after a kill, robust to invalid programs, clear config errors."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eznas import config as config_mod
from eznas import evolve, program
from eznas.errors import EznasError
from eznas.fitness import INVALID, UnitLayout, aggregate, correlation, net_scores
from eznas.parallel import SearchState, evaluate_programs
from eznas.scoring import Scorer, ScoringOptions, score_programs
from eznas.stats import TaskStats


def tiny_config(tmp_path: Path, **search) -> dict:
    s = dict(primitive_set="compact", population=6, offspring=8, generations=4, subsample=8, patience=10,
             hall_of_fame=3, tournament=3, max_depth=6, init_min_depth=1, init_max_depth=3)
    s.update(search)
    return {
        "seed": 3,
        "run_dir": str(tmp_path / "run"),
        "tasks": [{"space": "nb201", "dataset": "cifar10"}, {"space": "nb201", "dataset": "cifar100"}],
        "split": {"evolve": 12, "validate": 6, "test": 6},
        "network": {"width": 4, "depth": 1},
        "stats": {"batch_size": 8, "R": 4, "s": 4, "cache_dir": str(tmp_path.parent / "shared-cache")},
        "search": s,
    }


def run_tiny(tmp_path: Path, name: str, **search) -> dict:
    raw = tiny_config(tmp_path, **search)
    raw["run_dir"] = str(tmp_path / name)
    cfg = config_mod.from_dict(raw)
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    return json.loads((Path(cfg.run_dir) / "hall_of_fame.json").read_text())


def test_same_seed_same_hall_of_fame(tmp_path, data_dir):
    a = run_tiny(tmp_path, "a")
    b = run_tiny(tmp_path, "b")
    assert [h["infix"] for h in a["hall_of_fame"]] == [h["infix"] for h in b["hall_of_fame"]]
    assert a == b
    run_dir = tmp_path / "a"
    log = (run_dir / "log.csv").read_text().splitlines()
    assert log[0].startswith("gen,evals,invalid,best") and len(log) == 1 + 5
    for name in ("config.yaml", "checkpoint.json", "hall_of_fame.json", "best.txt", "fitness.png"):
        assert (run_dir / name).is_file(), name
    best = a["hall_of_fame"][0]
    assert set(best["test"]) == {"nb201/cifar10", "nb201/cifar100"}
    assert all(-1 <= r["spearman"] <= 1 for r in best["test"].values())
    # the reported program parses back and its validation fitness is reproducible from the text
    program.parse_infix(best["infix"], program.load_primitive_set("compact"))


def test_different_seed_differs(tmp_path, data_dir):
    raw = tiny_config(tmp_path)
    raw["seed"] = 4
    raw["run_dir"] = str(tmp_path / "c")
    cfg = config_mod.from_dict(raw)
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    a = run_tiny(tmp_path, "a")
    c = json.loads((tmp_path / "c" / "hall_of_fame.json").read_text())
    assert a != c


def test_kill_and_resume_matches_uninterrupted(tmp_path, data_dir):
    ref = run_tiny(tmp_path, "ref", generations=6)
    raw = tiny_config(tmp_path, generations=6)
    raw["run_dir"] = str(tmp_path / "killed")
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "eznas.evolve", str(cfg_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.json"
    deadline = time.time() + 120
    gen = -1
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            try:
                gen = json.loads(ckpt.read_text())["gen"]
            except (json.JSONDecodeError, KeyError):
                gen = -1
            if gen >= 2:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(ckpt.read_text())
    assert 1 <= state["gen"] < 6 and not state["done"], "the run should have been killed mid-search"
    out = subprocess.run([sys.executable, "-m", "eznas.evolve", str(cfg_path), "--resume", str(tmp_path / "killed")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    resumed = json.loads((tmp_path / "killed" / "hall_of_fame.json").read_text())
    assert resumed == ref
    ref_log = (tmp_path / "ref" / "log.csv").read_text().splitlines()
    got_log = (tmp_path / "killed" / "log.csv").read_text().splitlines()
    cols = lambda line: line.split(",")[:7]  # everything but timings  # noqa: E731
    assert [cols(l) for l in got_log] == [cols(l) for l in ref_log]


def test_existing_run_dir_needs_resume(tmp_path, data_dir):
    run_tiny(tmp_path, "x", generations=1)
    raw = tiny_config(tmp_path, generations=1)
    raw["run_dir"] = str(tmp_path / "x")
    cfg_path = tmp_path / "x.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "eznas.evolve", str(cfg_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("eznas: error: run directory") and "--resume" in out.stderr
    assert "Traceback" not in out.stderr


def _fake_stats(n_nets: int = 10, units: int = 3) -> TaskStats:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(n_nets * units, 22, 2, 4, 4, generator=g)
    net_index = torch.arange(n_nets).repeat_interleave(units)
    acc = np.linspace(50, 90, n_nets)
    # make the weight's magnitude track accuracy so one program is perfect
    values[:, 0] = values[:, 0].abs() + torch.as_tensor(acc, dtype=torch.float32)[net_index].view(-1, 1, 1, 1)
    return TaskStats("fake/t", [str(i) for i in range(n_nets)], acc, values,
                     torch.ones_like(values, dtype=torch.bool), net_index)


def test_invalid_programs_never_crash_a_generation():
    ts = _fake_stats()
    state = SearchState({"evolve": {"fake/t": ts}}, ScoringOptions("kendall", "min", "mean", "eznas"))
    programs = ["mean(W)", "mean(sub(W, W))", "div_s(mean(W), sub_s(mean(W), mean(W)))", "log_s(neg_s(mean(W)))",
                "mean(exp(exp(exp(W))))", "this is not a program", "slogdet(sub(W, W))"]
    res = evaluate_programs(state, programs, "evolve", None)
    assert len(res) == len(programs)
    assert res[0].fitness == pytest.approx(1.0) and res[0].valid
    for r in res[1:]:
        assert math.isfinite(r.fitness)
        if not r.valid:
            assert r.fitness == INVALID
    assert not res[1].valid  # constant scores
    assert not res[5].valid  # unparsable text
    again = score_programs(programs, {"fake/t": ts}, state.options)  # the one scoring loop, without a backend
    assert json.dumps([(r.fitness, r.per_task) for r in again]) == json.dumps([(r.fitness, r.per_task) for r in res])


@pytest.mark.parametrize("call, message", [
    (lambda: ScoringOptions(fitness="pearson"), "unknown fitness kind 'pearson'; valid: kendall, spearman"),
    (lambda: ScoringOptions(aggregate="max"), "unknown task aggregate 'max'; valid: min, mean"),
    (lambda: ScoringOptions(unit_aggregate="max"), "unknown unit aggregate 'max'; valid: mean, sum, median"),
    (lambda: ScoringOptions(memo_bytes=-1), "memo_bytes"),
    (lambda: correlation(np.arange(3.0), np.arange(3.0), "pearson"), "unknown fitness kind 'pearson'"),
    (lambda: aggregate([0.5, 0.2], "max"), "unknown task aggregate 'max'; valid: min, mean"),
])
def test_unknown_fitness_options_raise(call, message):
    """No silent fallback to Kendall or the mean: the library names the valid values."""
    with pytest.raises(EznasError, match=message):
        call()


def test_scorer_matches_a_direct_computation():
    """Scorer.score / correlations are net_scores + correlation + aggregate of the program's rows."""
    ts = _fake_stats(8, 3)
    options = ScoringOptions("spearman", "mean", "sum", "compact")
    scorer = Scorer({"fake/t": ts, "fake/u": ts}, options, nets={"fake/t": [0, 2, 4, 6], "fake/u": list(range(8))})
    infix = "frob(mul(W, X_D))"
    res = scorer.score([infix])[0]
    pset = program.load_primitive_set("compact")
    rows = program.Evaluator(ts.values, pset)(program.parse_infix(infix, pset))
    full = net_scores(rows, UnitLayout.of(ts), "sum")
    want_t = correlation(full[[0, 2, 4, 6]], ts.accuracies[[0, 2, 4, 6]], "spearman")
    want_u = correlation(full, ts.accuracies, "spearman")
    assert res.per_task == pytest.approx({"fake/t": want_t, "fake/u": want_u})
    assert res.fitness == pytest.approx((want_t + want_u) / 2)
    report = scorer.correlations([infix])[0]
    assert report["fake/t"]["nets"] == 4 and report["fake/u"]["spearman"] == pytest.approx(want_u)
    with pytest.raises(EznasError, match="column 1: unknown name"):
        scorer.net_scores("nope(W)")


def test_fitness_helpers():
    ts = _fake_stats(6, 2)
    layout = UnitLayout.of(ts)
    rows = torch.arange(12, dtype=torch.float32)
    assert np.allclose(net_scores(rows, layout, "mean"), [0.5, 2.5, 4.5, 6.5, 8.5, 10.5])
    assert np.allclose(net_scores(rows, layout, "sum"), [1, 5, 9, 13, 17, 21])
    rows[3] = float("nan")
    s = net_scores(rows, layout, "median")
    assert math.isnan(s[1]) and s[0] == 0.0  # torch median of an even count is the lower middle value
    assert math.isnan(correlation(np.ones(5), np.arange(5.0)))  # constant scores
    assert math.isnan(correlation(np.array([1.0, np.inf, 2.0]), np.arange(3.0)))
    assert correlation(np.arange(5.0), np.arange(5.0), "spearman") == pytest.approx(1.0)
    assert aggregate([0.5, 0.2], "min") == 0.2 and aggregate([0.5, 0.2], "mean") == pytest.approx(0.35)
    assert aggregate([0.5, float("nan")], "mean") == INVALID


def test_process_backend_matches_serial(tmp_path, data_dir):
    a = run_tiny(tmp_path, "serial", generations=2)
    b = run_tiny(tmp_path, "proc", generations=2, backend="process", workers=2)
    assert a == b


@pytest.mark.parametrize("change,message", [
    ({"search": {"population": 10, "offspring": 5}}, "lambda >= mu"),
    ({"search": {"max_depth": 0}}, "'search.max_depth': must be >= 1"),
    ({"search": {"primitive_set": "nope"}}, "nope"),
    ({"search": {"pop": 3}}, "unknown config key 'pop'"),
    ({"search": {"selection": "roulette"}}, "'search.selection': 'roulette' is not one of best, tournament"),
    ({"search": {"parsimony": 2.5}}, "'search.parsimony': must be in [1, 2]"),
    ({"tasks": [{"space": "nb999", "dataset": "cifar10"}]}, "unknown search space 'nb999'"),
])
def test_config_errors_are_one_line(tmp_path, change, message, data_dir):
    raw = tiny_config(tmp_path)
    for k, v in change.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "eznas.evolve", str(p)], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eznas: error:") and message in lines[0], out.stderr


def test_same_seed_identical_from_fresh_statistics(tmp_path, data_dir):
    """Determinism end to end: statistics recomputed from scratch give the same hall of fame."""
    halls = []
    for name in ("one", "two"):
        raw = tiny_config(tmp_path / name, generations=2)
        raw["stats"]["cache_dir"] = str(tmp_path / name / "cache")
        raw["run_dir"] = str(tmp_path / name / "run")
        cfg = config_mod.from_dict(raw)
        evolve.run(cfg, Path(cfg.run_dir), progress=False)
        halls.append(json.loads((Path(cfg.run_dir) / "hall_of_fame.json").read_text()))
    assert halls[0] == halls[1]


def test_after_search_exports_and_evaluates(tmp_path, data_dir):
    raw = tiny_config(tmp_path, generations=1)
    raw["run_dir"] = str(tmp_path / "after")
    raw["evaluate"] = {"proxies": ["params"], "after_search": True}
    cfg = config_mod.from_dict(raw)
    result = evolve.run(cfg, Path(cfg.run_dir), progress=False)
    run_dir = Path(cfg.run_dir)
    assert (run_dir / "proxy.py").is_file()
    table = json.loads((run_dir / "evaluation" / "results.json").read_text())["tasks"]
    assert set(table) == {"nb201/cifar10", "nb201/cifar100"}
    for metrics in table.values():
        assert set(metrics) == {"params", "proxy"}
        assert -1.0 <= metrics["proxy"]["spearman"] <= 1.0
    assert result["evaluation"].labels == ["params", "proxy"]


@pytest.mark.parametrize("selection", ["tournament", "double_tournament"])
def test_selection_schemes_are_used_and_reproducible(tmp_path, selection, data_dir):
    """Tournament survival (EZNAS) and double tournament (bloat control) are real alternatives to
    truncation: reproducible under the seed, and they pick different survivors than `best`."""
    a = run_tiny(tmp_path, f"{selection}-a", selection=selection, generations=3)
    b = run_tiny(tmp_path, f"{selection}-b", selection=selection, generations=3)
    assert a == b
    cfg = config_mod.from_dict(tiny_config(tmp_path, selection=selection))
    tb = evolve.make_toolbox(program.load_primitive_set("compact"), cfg.search)
    import random

    random.seed(0)
    pop = [tb.individual() for _ in range(30)]
    for i, ind in enumerate(pop):
        ind.fitness.values = (i / 30,)
    chosen = tb.select(pop, 10)
    assert len(chosen) == 10
    # truncation would keep exactly the 10 fittest; a tournament keeps some weaker ones
    assert sorted(c.fitness.values[0] for c in chosen) != [i / 30 for i in range(20, 30)]
    if selection == "double_tournament":
        random.seed(0)
        sizes_dt = np.mean([len(c) for c in tb.select(pop, 200)])
        strict = evolve.make_toolbox(program.load_primitive_set("compact"), config_mod.from_dict(
            tiny_config(tmp_path, selection="double_tournament", parsimony=2.0)).search)
        plain = evolve.make_toolbox(program.load_primitive_set("compact"),
                                    config_mod.from_dict(tiny_config(tmp_path, selection="tournament")).search)
        random.seed(0)
        sizes_strict = np.mean([len(c) for c in strict.select(pop, 300)])
        random.seed(0)
        sizes_plain = np.mean([len(c) for c in plain.select(pop, 300)])
        assert sizes_strict < sizes_plain  # parsimony 2: the smaller of two fitness winners always survives
        assert np.isfinite(sizes_dt)


def test_dead_worker_is_one_error_not_a_hang(tmp_path, data_dir):
    """A worker killed mid-search (e.g. by the OOM killer) stops the search with a clear error."""
    import os
    import signal as sig

    from eznas.errors import EznasError
    from eznas.parallel import ProcessBackend

    cfg = config_mod.from_dict(tiny_config(tmp_path))
    data = evolve.prepare(cfg, progress=False)
    opts = ScoringOptions("spearman", "min", "mean", "compact")
    backend = ProcessBackend(SearchState({"evolve": data.splits["evolve"], "validate": data.splits["validate"]},
                                         opts), workers=2)
    try:
        assert len(backend.evaluate(["frob(A_D)", "l1(gZ_D)"], "evolve", None)) == 2
        for pid in list(backend.pool._processes):
            os.kill(pid, sig.SIGKILL)
        with pytest.raises(EznasError, match="worker process died"):
            backend.evaluate(["frob(A_D)", "l1(gZ_D)"], "evolve", None)
    finally:
        backend.close()
