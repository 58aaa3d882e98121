"""`eznas export` / `load_proxy` / `eznas score` and :mod:`eznas.simplify`.

The central check: for every network of a small task, the exported module's score equals the
in-engine score (statistics as the search reads them from its cache, the raw program run by
:class:`eznas.program.Evaluator`, :func:`eznas.fitness.net_scores`): to 1e-6 relative for
programs with matmul-type primitives, exactly for a counting program on float16-cached statistics.
"""
from __future__ import annotations

import ast
import builtins
import csv
import hashlib
import importlib.util
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import eznas
from eznas import records, cli, export, program
from eznas import config as config_mod
from eznas import primitives as P
from eznas import simplify as simp
from eznas.errors import EznasError
from eznas.fitness import UnitLayout, net_scores
from eznas.simplify import Call, Const, Var
from eznas.spaces import build
from eznas.spaces.common import ConvBNReLU
from eznas.stats import StatsSettings, build_cache, compute_net, load_task_stats, net_batches

SEED = 3
PROGRAMS = [
    "mean_abs(div(gX_P, div(abs(gX_D), gW_N)))",  # rank 1 of a real NB201 run
    "add_s(slogdet(matmul(W, transpose(transpose(W)))), neg_s(neg_s(svd_ratio(add(W, gW_N)))))",
    "sub_s(mul_s(1.0, mean(normalize(gZ_D))), mul_s(kl(Z_P, A_N), hamming(X_P, gX_N)))",
]
#: counts elements; float16 storage flips some comparisons, so it tells cached from raw statistics
COUNT_PROGRAM = "sum(gt(Z_D, Z_P))"
ARCH = "(0, 2, 3, 2, 3, 1)"
ALLOWED_IMPORTS = {"__future__", "math", "dataclasses", "typing", "collections.abc", "torch", "torch.nn",
                   "torch.nn.functional"}


def _tiny_config(run_dir: Path, dtype: str = "float32", unit_aggregate: str = "mean") -> config_mod.Config:
    return config_mod.from_dict({
        "seed": SEED, "run_dir": str(run_dir), "tasks": [{"space": "nb201", "dataset": "cifar10"}],
        "split": {"evolve": 12, "validate": 6, "test": 6}, "network": {"width": 4, "depth": 1},
        "stats": {"batch_size": 8, "R": 4, "s": 4, "dtype": dtype},
        "search": {"primitive_set": "eznas", "unit_aggregate": unit_aggregate}})


def _run_with(run_dir: Path, programs: list[str], cfg: config_mod.Config) -> dict[int, Path]:
    """A run directory whose hall of fame holds ``programs``, each exported to a file."""
    run_dir.mkdir()
    config_mod.dump(cfg, run_dir / "config.yaml")
    hall = [{"infix": p, "evolve": 0.5 - i / 10, "validate": 0.4 - i / 10,
             "validate_per_task": {"nb201/cifar10": 0.4 - i / 10},
             "test": {"nb201/cifar10": {"spearman": 0.6, "kendall": 0.45, "nets": 6}}} for i, p in enumerate(programs)]
    (run_dir / "hall_of_fame.json").write_text(json.dumps({"hall_of_fame": hall}))
    files = {}
    for k in range(1, len(programs) + 1):
        files[k] = run_dir.parent / f"{run_dir.name}_proxy{k}.py"
        export.export_proxy(run_dir, files[k], rank=k)
    return files


def _engine(dtype: str, archs: list[str], cache: Path) -> tuple[StatsSettings, object]:
    """The search's view of ``archs``: statistics built into and read back from its cache."""
    st = StatsSettings("nb201", "cifar10", batch_size=8, seed=SEED, R=4, s=4, dtype=dtype, width=4, depth=1)
    build_cache([(a, st) for a in archs], cache, progress=False)
    task = records.Task("nb201", "cifar10", list(archs), np.zeros(len(archs)))
    return st, load_task_stats(task, st, cache)


@pytest.fixture(scope="module")
def task(data_dir, tmp_path_factory):
    """12 tiny NB201 nets, their cached engine statistics, and a run directory holding PROGRAMS."""
    root = tmp_path_factory.mktemp("export")
    run_dir = root / "run"
    files = _run_with(run_dir, PROGRAMS, _tiny_config(run_dir))
    archs = records.load_task("nb201", "cifar10", None).archs[:12]
    st, ts = _engine("float32", archs, root / "cache")
    return {"run_dir": run_dir, "st": st, "batches": net_batches(st), "archs": archs, "ts": ts, "files": files}


def _model(arch: str) -> nn.Module:
    return build("nb201", arch, "cifar10", seed=SEED, width=4, depth=1)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


# ----------------------------------------------------------------------------- exactness
def _engine_scores(ts, infix: str, how: str) -> np.ndarray:
    pset = program.load_primitive_set("eznas")
    return net_scores(program.Evaluator(ts.values, pset)(program.parse_infix(infix, pset)), UnitLayout.of(ts), how)


def test_exported_module_equals_engine_for_every_net(task):
    b, ts = task["batches"], task["ts"]
    run_proxies = export.load_run_proxies(task["run_dir"])
    worst = 0.0
    for k, infix in enumerate(PROGRAMS, 1):
        engine = _engine_scores(ts, infix, "mean")
        assert np.isfinite(engine).all(), infix
        module = export.load_proxy(task["files"][k], trust=True)  # runs the exported file's own code
        parsed = export.load_proxy(task["files"][k])  # rebuilt in-process from its JSON
        for i, arch in enumerate(task["archs"]):
            kw = dict(noise=b.N, perturbed=b.P)
            got = [module(_model(arch), b.D, b.targets, **kw), parsed(_model(arch), b.D, b.targets, **kw)]
            if i < 2:
                got.append(run_proxies[f"rank{k}"](_model(arch), b.D, b.targets, **kw))
            errs = [_rel(g, float(engine[i])) for g in got]
            assert max(errs) <= 1e-6, (infix, arch, got, engine[i])
            worst = max(worst, *errs)
    print(f"\nmax relative error exported vs engine over {len(PROGRAMS)} programs x {len(task['archs'])} nets: {worst:.3g}")


def test_counting_program_on_float16_cache_is_exact(data_dir, tmp_path):
    """A counting program on float16-cached statistics: the exported module's score is the
    search's to the last bit on every net, although raw float32 statistics would differ."""
    archs = records.load_task("nb201", "cifar10", None).archs[:6]
    run_dir = tmp_path / "run16"
    files = _run_with(run_dir, [COUNT_PROGRAM], _tiny_config(run_dir, "float16", "sum"))
    st, ts = _engine("float16", archs, tmp_path / "cache")
    engine = _engine_scores(ts, COUNT_PROGRAM, "sum")
    b = net_batches(st)
    module = export.load_proxy(files[1], trust=True)
    parsed = export.load_proxy(files[1])
    got = [[p(_model(a), b.D, b.targets, noise=b.N, perturbed=b.P) for a in archs] for p in (module, parsed)]
    assert got[0] == list(engine) and got[1] == list(engine)
    # without the storage round trip the counts differ: the test can tell the two apart
    raw = torch.cat([compute_net(a, st, b)[0] for a in archs])
    raw_scores = _engine_scores(type(ts)(ts.name, ts.archs, ts.accuracies, raw, None, ts.net_index), COUNT_PROGRAM, "sum")
    assert (raw_scores != engine).any()


def test_exported_file_needs_only_torch(task):
    path = task["files"][2]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS
        elif isinstance(node, ast.ImportFrom):
            assert node.module in ALLOWED_IMPORTS
    code = f"""
import sys, importlib.util, torch
sys.modules["eznas"] = None  # importing eznas now fails
spec = importlib.util.spec_from_file_location("proxy", {str(path)!r})
mod = importlib.util.module_from_spec(spec); sys.modules["proxy"] = mod; spec.loader.exec_module(mod)
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                        torch.nn.Conv2d(4, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
print(repr(mod.score(m, torch.randn(4, 3, 8, 8), torch.arange(4))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert math.isfinite(float(out.stdout.strip()))


def test_docstring_and_run_directory_files(task):
    run_dir, text = task["run_dir"], task["files"][3].read_text()
    raw = PROGRAMS[2]
    simplified = "sub_s(mean(normalize(gZ_D)), mul_s(kl(Z_P, A_N), hamming(X_P, gX_N)))"
    assert text.startswith("# eznas-proxy: format 1")
    mod = export.load_proxy(task["files"][3], trust=True).__globals__
    doc = mod["__doc__"]
    assert f"Expression as evolved (raw):\n    {raw}\n" in doc
    assert f"(simplified, provably equivalent to the evolved one; see eznas.simplify):\n    {simplified}\n" in doc
    assert simp.to_latex(simplified) in doc
    assert str((run_dir / "config.yaml").resolve()) in doc and "seed              3" in doc
    assert "Spearman 0.6000" in doc and "R = 4 blocks of s x s = 4 x 4" in doc
    assert mod["EXPRESSION"] == simplified and mod["SETTINGS"]["R"] == 4
    meta = export.read_proxy_file(task["files"][3])
    assert meta["raw_expression"] == raw and meta["provenance"]["rank"] == 3
    assert (run_dir / "best.txt").read_text() == PROGRAMS[0] + "\n"
    assert (run_dir / "best.tex").read_text().strip() == simp.to_latex(PROGRAMS[0])
    assert (run_dir / "rank3_simplified.txt").read_text().strip() == simplified
    assert (run_dir / "rank3.tex").read_text().strip() == simp.to_latex(simplified)


# ----------------------------------------------------------------------------- loading and trust
def _plain_cnn(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=inplace),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=inplace),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


class _Residual(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace
        self.conv, self.bn, self.relu = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True)
        self.head = nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        if self.inplace:
            out += x
            out = self.relu(out)
        else:
            out = torch.relu(out + x)
        return self.head(out.mean((2, 3)))


def _residual(inplace: bool) -> nn.Module:
    torch.manual_seed(0)
    return _Residual(inplace)


def test_load_proxy_parses_never_executes(task, monkeypatch):
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4)
    expected = export.load_proxy(task["files"][2], trust=True)(_plain_cnn(), x, y)

    def forbidden(*args, **kwargs):
        raise AssertionError("a proxy file was executed")

    for name in ("exec", "eval", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    monkeypatch.setattr(importlib.util, "spec_from_file_location", forbidden)
    proxy = eznas.load_proxy(str(task["files"][2]))
    assert isinstance(proxy, export.Proxy)
    assert proxy(_plain_cnn(), x, y) == expected and math.isfinite(expected)


def test_tampered_or_foreign_files_are_refused_without_trust(task, tmp_path, capsys):
    text = task["files"][1].read_text()
    tampered = tmp_path / "tampered.py"
    tampered.write_text(text.replace('"expression": "mean_abs(', '"expression": "mean(', 1))
    with pytest.raises(EznasError, match="modified after `eznas export`.*trust=True"):
        export.load_proxy(tampered)
    # the hash is no signature: a rewritten file with a fresh hash is still only parsed, never run
    for old, new, message in [('"expression": "mean_abs(', '"expression": "__import__(', "unknown name '__import__'"),
                              ('"R": 4,', '"R": 100000,', "R * s * s <= 65536")]:
        body = text.replace(old, new, 1).rpartition(export.HASH_PREFIX)[0]
        forged = tmp_path / "forged.py"
        forged.write_text(body + export.HASH_PREFIX + hashlib.sha256(body.encode()).hexdigest() + "\n")
        with pytest.raises(EznasError, match=re.escape(message)):
            export.load_proxy(forged)
    foreign = tmp_path / "foreign.py"
    foreign.write_text("def score(model, inputs, targets):\n    return 42.0\n")
    with pytest.raises(EznasError, match="not a proxy written by `eznas export`"):
        export.load_proxy(foreign)
    assert export.load_proxy(foreign, trust=True)(None, None, None) == 42.0  # explicit opt-in runs it
    assert export.load_proxy(tampered, trust=True).__globals__["EXPRESSION"] == PROGRAMS[0]
    assert cli.main(["score", "--proxy", str(tampered), "--space", "nb201", "--arch", ARCH]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eznas: error:") and "--trust" in err[0]


def test_baselines_and_runs_by_name(task):
    from eznas.proxies import get_proxy

    assert eznas.load_proxy("params") is get_proxy("params")
    with pytest.raises(EznasError, match="unknown proxy 'nope'"):
        eznas.load_proxy("nope")
    with pytest.raises(EznasError, match="not found"):
        eznas.load_proxy("missing/proxy.py")
    proxies = export.load_run_proxies(task["run_dir"])
    assert list(proxies) == ["rank1", "rank2", "rank3"] and proxies["rank2"].raw == PROGRAMS[1]
    assert eznas.load_proxy(str(task["run_dir"])).raw == PROGRAMS[0]


def test_plain_models_units_and_state(task):
    """Plain-model fallback: same statistics with in-place and ordinary ReLUs, and as for the
    equivalent eznas Conv-BN-ReLU units; the model is left as it was; no conv is an error."""
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    proxy = export.load_proxy(task["files"][1])
    plain, inplace = _plain_cnn(), _plain_cnn(inplace=True)
    units = nn.Sequential(ConvBNReLU(3, 8, 3, padding=1), ConvBNReLU(8, 8, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    units[0].conv.weight.data.copy_(plain[0].weight.data)
    units[1].conv.weight.data.copy_(plain[3].weight.data)
    units[4].load_state_dict(plain[8].state_dict())
    ref = proxy.statistics(plain, x, y)
    assert ref.shape == (2, 22, 4, 4, 4) and ref.abs().sum() > 0
    assert torch.equal(proxy.statistics(inplace, x, y), ref)
    assert torch.equal(proxy.statistics(units, x, y), ref)
    plain.eval()
    grad = torch.ones_like(plain[8].weight)
    plain[8].weight.grad = grad
    running = plain[1].running_mean.clone()
    assert math.isfinite(proxy(plain, x, y))
    assert not plain.training and plain[8].weight.grad is grad and torch.equal(plain[1].running_mean, running)
    # torchvision-style `out += x; relu_(out)`: the ReLU is not applied to Z itself, so A = relu(Z)
    # is derived, as for a functional relu
    inplace_res, functional_res = _residual(True), _residual(False)
    functional_res.load_state_dict(inplace_res.state_dict())
    assert torch.equal(proxy.statistics(inplace_res, x, y), proxy.statistics(functional_res, x, y))
    with pytest.raises(EznasError, match="no nn.Conv2d"):
        proxy(nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), x, y)


# ----------------------------------------------------------------------------- CLI
def test_score_cli_arch_and_archs(task, tmp_path, capsys):
    proxy = str(task["files"][1])
    common = ["--space", "nb201", "--dataset", "cifar10", "--batch-size", "8", "--seed", str(SEED)]
    assert cli.main(["score", "--proxy", proxy, "--arch", ARCH, *common]) == 0
    one = float(capsys.readouterr().out.strip())
    archs = tmp_path / "archs.txt"
    archs.write_text(f"# two nets\n{ARCH}\n\n(1, 0, 2, 2, 2, 1)\n")
    out = tmp_path / "scores.csv"
    assert cli.main(["score", "--proxy", proxy, "--archs", str(archs), "--out", str(out), *common]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["arch"] for r in rows] == [ARCH, "(1, 0, 2, 2, 2, 1)"]
    assert float(rows[0]["score"]) == pytest.approx(one, rel=1e-9) and math.isfinite(float(rows[1]["score"]))
    assert "scored 2 architectures" in capsys.readouterr().out
    assert cli.main(["score", "--proxy", "params", "--arch", "(9, 9)", *common]) == 2
    assert "malformed nb201 arch key" in capsys.readouterr().err

    # several proxies: one column each, in order, plus their rank-average ensemble
    archs.write_text(f"{ARCH}\n(1, 0, 2, 2, 2, 1)\n(0, 0, 0, 0, 0, 0)\n")
    assert cli.main(["score", "--proxy", proxy, "--proxy", "params", "--archs", str(archs), "--out", str(out),
                     *common]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["arch", proxy, "params", "ensemble_rank"]
    assert float(rows[0][proxy]) == pytest.approx(one, rel=1e-9)
    from scipy.stats import rankdata

    cols = [[float(r[c]) for r in rows] for c in (proxy, "params")]
    expect = (rankdata(cols[0]) + rankdata(cols[1])) / 2
    assert [float(r["ensemble_rank"]) for r in rows] == pytest.approx(list(expect))


def test_export_cli_on_an_evolved_run(data_dir, tmp_path, capsys):
    from eznas import evolve

    raw = config_mod.to_dict(_tiny_config(tmp_path / "evolved"))
    raw.pop("source")
    raw["split"] = {"evolve": 8, "validate": 4, "test": 4}
    raw["stats"]["cache_dir"] = str(tmp_path / "cache")
    raw["search"].update(primitive_set="compact", population=4, offspring=4, generations=1, subsample=None,
                         hall_of_fame=2, init_min_depth=1, init_max_depth=2)
    cfg = config_mod.from_dict(raw)
    evolve.run(cfg, Path(cfg.run_dir), progress=False)
    capsys.readouterr()
    out = tmp_path / "exported" / "proxy.py"
    out.parent.mkdir()
    assert cli.main(["export", cfg.run_dir, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    best = json.loads((Path(cfg.run_dir) / "hall_of_fame.json").read_text())["hall_of_fame"][0]
    assert f"raw:        {best['infix']}" in printed and out.is_file()
    assert best["infix"] in export.read_proxy_file(out)["raw_expression"]
    assert cli.main(["export", cfg.run_dir, "--rank", "9", "--out", str(out)]) == 2
    assert "--rank must be in 1.." in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eznas: error:"), err
    return err[0]


def test_export_out_is_checked_before_work(task, tmp_path, capsys):
    run_dir = task["run_dir"]
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    link = tmp_path / "link.py"
    link.symlink_to(tmp_path / "elsewhere.py")
    for out, message in [(run_dir / "config.yaml", "would overwrite"), (run_dir / "hall_of_fame.json", "would overwrite"),
                         (run_dir / "best.txt", "would overwrite"), (tmp_path, "is a directory"),
                         (link, "symbolic link"), (Path("/dev/null"), "not a regular file"),
                         (tmp_path / "missing" / "p.py", "does not exist")]:
        if out.name == "best.txt" and not out.exists():
            out.write_text(PROGRAMS[0] + "\n")
            before["best.txt"] = out.read_bytes()
        assert cli.main(["export", str(run_dir), "--out", str(out)]) == 2
        assert message in _one_error_line(capsys), out
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before  # nothing written
    assert not (tmp_path / "elsewhere.py").exists()


def test_score_out_and_archs_are_checked_before_scoring(task, tmp_path, capsys, monkeypatch):
    from eznas import spaces

    def no_build(*args, **kwargs):
        raise AssertionError("a net was built before the arguments were checked")

    monkeypatch.setattr(spaces, "build", no_build)
    archs = tmp_path / "archs.txt"
    archs.write_text(f"# header\n\n{ARCH}\n  # indented comment\n(1, 0, 2)\n")
    common = ["score", "--proxy", "params", "--space", "nb201", "--batch-size", "8"]
    assert cli.main([*common, "--archs", str(archs), "--out", str(tmp_path / "s.csv")]) == 2
    line = _one_error_line(capsys)
    assert f"{archs} line 5:" in line and "nb201" in line
    archs.write_text(f"{ARCH}\n")
    for out, message in [(tmp_path, "is a directory"), (tmp_path / "no" / "s.csv", "does not exist"),
                         (archs, "would overwrite")]:
        assert cli.main([*common, "--archs", str(archs), "--out", str(out)]) == 2
        assert message in _one_error_line(capsys)


def test_score_keeps_partial_results(task, tmp_path, capsys, monkeypatch):
    from eznas import spaces
    from eznas.export import score as score_mod

    archs = tmp_path / "archs.txt"
    archs.write_text(f"{ARCH}\n(1, 0, 2, 2, 2, 1)\n(0, 0, 0, 0, 0, 0)\n")
    out = tmp_path / "s.csv"
    common = ["score", "--proxy", "params", "--space", "nb201", "--batch-size", "8", "--archs", str(archs)]
    real_build, calls = spaces.build, []

    def build_then_interrupt(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_build(*args, **kwargs)

    monkeypatch.setattr(spaces, "build", build_then_interrupt)
    assert cli.main([*common, "--out", str(out)]) == 130
    assert [r["arch"] for r in csv.DictReader(out.open())] == [ARCH, "(1, 0, 2, 2, 2, 1)"]
    monkeypatch.setattr(spaces, "build", real_build)

    def disk_full(path, text):
        raise EznasError(f"cannot write {path}: disk full (the previous version, if any, is kept)")

    monkeypatch.setattr(score_mod, "atomic_write_text", disk_full)
    capsys.readouterr()
    assert cli.main([*common, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "disk full" in captured.err and "printed to stdout" in captured.err
    assert [r["arch"] for r in csv.DictReader(captured.out.splitlines())] == [ARCH, "(1, 0, 2, 2, 2, 1)",
                                                                             "(0, 0, 0, 0, 0, 0)"]


def test_runtime_is_torch_only_and_embedded_verbatim(task):
    from eznas import runtime
    from eznas.export import writing

    text = task["files"][1].read_text()
    folder = Path(runtime.__file__).parent
    imports, sections = writing.runtime_sections()
    assert [name for name, _ in sections] == [f"eznas/runtime/{m}.py" for m in runtime.MODULES]
    for name, code in sections:
        source = (folder / Path(name).name).read_text()
        code = code.split("\n\n", 1)[1]  # after the module docstring, turned into comments
        assert code in source and code in text  # verbatim, both ways
        for node in ast.walk(ast.parse(source)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            for m in mods:
                assert m.split(".")[0] in ("__future__", "collections", "dataclasses", "math", "typing", "torch") \
                    or m.startswith("eznas.runtime"), (name, m)


# ----------------------------------------------------------------------------- simplify and LaTeX
def _random_values(rows: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(rows, 22, 2, 4, 4, generator=g)
    v[0, 0] = 0.0
    v[1, 3, 0, 0, 0] = float("inf")
    v[2, 5, :, 1, 1] = float("nan")
    v[3, 7] = v[3, 1]
    v[4] *= 1e20
    v[5, 9] = -v[5, 9].abs()
    return v


_S_PATTERNS = [
    lambda x, y: Call("neg_s", (Call("neg_s", (x,)),)), lambda x, y: Call("mul_s", (x, Const(1.0))),
    lambda x, y: Call("mul_s", (Const(1.0), x)), lambda x, y: Call("div_s", (x, Const(1.0))),
    lambda x, y: Call("add_s", (x, Const(0.0))), lambda x, y: Call("add_s", (Const(0.0), x)),
    lambda x, y: Call("sub_s", (x, Const(0.0))), lambda x, y: Call("sub_s", (Const(0.0), x)),
    lambda x, y: Call("mul_s", (x, Const(-1.0))), lambda x, y: Call("div_s", (x, Const(-1.0))),
    lambda x, y: Call("abs_s", (Call("abs_s", (x,)),)), lambda x, y: Call("abs_s", (Call("neg_s", (x,)),)),
    lambda x, y: Call("log_s", (Call("abs_s", (x,)),)), lambda x, y: Call("log_s", (Call("neg_s", (x,)),)),
    lambda x, y: Call("neg_s", (Call("sub_s", (x, y)),)), lambda x, y: Call("add_s", (x, Call("neg_s", (y,)))),
    lambda x, y: Call("add_s", (Call("neg_s", (x,)), y)), lambda x, y: Call("sub_s", (x, Call("neg_s", (y,)))),
    lambda x, y: Call("mul_s", (Call("neg_s", (x,)), Call("neg_s", (y,)))),
    lambda x, y: Call("div_s", (Call("neg_s", (x,)), Call("neg_s", (y,)))),
    lambda x, y: Call("sub_s", (x, x)), lambda x, y: Call("mul_s", (x, Const(0.0))),
    lambda x, y: Call("div_s", (Const(0.0), x)),
]
_T_PATTERNS = [
    lambda x: Call("abs", (Call("abs", (x,)),)), lambda x: Call("abs", (Call("square", (x,)),)),
    lambda x: Call("relu", (Call("sqrt", (x,)),)), lambda x: Call("square", (Call("abs", (x,)),)),
    lambda x: Call("sqrt", (Call("abs", (x,)),)), lambda x: Call("abslog", (Call("abs", (x,)),)),
    lambda x: Call("transpose", (Call("transpose", (x,)),)), lambda x: Call("relu", (Call("exp", (x,)),)),
    lambda x: Call("abs", (Call("sigmoid", (x,)),)), lambda x: Call("sub", (x, x)),
]


def _random_expr(rng: random.Random, want: type, depth: int) -> simp.Expr:
    if depth <= 0 or rng.random() < 0.15:
        if want is P.Tensor:
            return Var(rng.choice(["W", "X_D", "Z_N", "A_P", "gW_D", "gZ_P"]))
        if rng.random() < 0.4:
            return Const(rng.choice([0.0, 1.0, -1.0, 0.5, 2.0, 3.0]))
    specs = [s for s in P.REGISTRY.values() if s.ret is want]
    spec = rng.choice(specs)
    node: simp.Expr = Call(spec.name, tuple(_random_expr(rng, a, depth - 1) for a in spec.args))
    if rng.random() < 0.5:
        if want is P.Scalar:
            node = rng.choice(_S_PATTERNS)(node, _random_expr(rng, P.Scalar, depth - 2))
        else:
            node = rng.choice(_T_PATTERNS)(node)
    return node


def _same(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> bool:
    ok = torch.isclose(a, b, rtol=1e-5, atol=0.0, equal_nan=True)
    return bool((ok if where is None else ok | ~where).all())


def test_simplify_is_equivalent_on_random_trees():
    rng = random.Random(0)
    values = _random_values()
    finite_values = torch.randn(6, 22, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    changed = 0
    pset = program.load_primitive_set("eznas")
    trees = [_random_expr(rng, P.Scalar, 5) for _ in range(250)]
    trees += [simp.as_expr(program.random_tree(pset, i, 2, 5)) for i in range(60)]
    for tree in trees:
        simple = simp.simplify(tree)
        assert simp.size(simple) <= simp.size(tree)
        assert simp.parse(simp.to_infix(simple)) == simple  # printing round-trips
        changed += simple != tree
        raw_v, simple_v = simp.evaluate(tree, values), simp.evaluate(simple, values)
        assert _same(raw_v, simple_v), (simp.to_infix(tree), simp.to_infix(simple), raw_v, simple_v)
        assert simp.simplify(simple) == simple  # a fixed point
        finite = simp.simplify(tree, assume_finite=True)
        raw_f = simp.evaluate(tree, finite_values)
        assert _same(raw_f, simp.evaluate(finite, finite_values), torch.isfinite(raw_f)), simp.to_infix(tree)
    assert changed >= 150


@pytest.mark.parametrize("raw,simple", [
    ("mul_s(1.0, neg_s(neg_s(mean(abs(abs(W))))))", "mean(abs(W))"),
    ("add_s(div_s(add_s(1.0, 1.0), 4.0), mean(W))", "add_s(0.5, mean(W))"),
    ("abs_s(frob(W))", "frob(W)"),
    ("mean(transpose(transpose(W)))", "mean(transpose(transpose(W)))"),  # W may hold inf
    ("mean(transpose(transpose(abs(W))))", "mean(abs(W))"),
    ("add_s(mean(W), neg_s(std(W)))", "sub_s(mean(W), std(W))"),
    ("sub_s(mean(W), mean(W))", "sub_s(mean(W), mean(W))"),  # NaN - NaN is NaN: kept
    ("mean_abs(abs(square(abs(gW_D))))", "mean_abs(square(gW_D))"),
])
def test_simplify_examples(raw, simple):
    assert simp.to_infix(simp.simplify(raw)) == simple


def test_simplify_assume_finite():
    assert simp.to_infix(simp.simplify("add_s(sub_s(mean(W), mean(W)), std(W))", assume_finite=True)) == "std(W)"
    assert simp.to_infix(simp.simplify("mul_s(frob(sub(W, W)), 2.0)", assume_finite=True)) == "0.0"


def test_latex_of_known_trees():
    assert simp.to_latex("div_s(mean_abs(mul(gW_D, W)), 2.0)") == \
        r"\frac{\overline{\left\lvert \nabla W_{D} \odot W \right\rvert}}{2.0}"
    assert simp.to_latex("sub_s(mean(W), add_s(std(X_N), 1.0))") == \
        r"\overline{W} - \left(\operatorname{std}\left(X_{N}\right) + 1.0\right)"
    assert simp.to_latex("slogdet(matmul(transpose(W), sqrt(square(Z_D))))") == \
        r"\log\left\lvert \det \left(W^{\top}\,\sqrt{Z_{D}^{2}}\right) \right\rvert"
    assert simp.to_latex("mean(square(transpose(gA_P)))") == r"\overline{\left(\left(\nabla A_{P}\right)^{\top}\right)^{2}}"


def test_parse_errors_are_clear():
    for text, message in [("mean(W", "expected ')'"), ("meen(W)", "did you mean mean"),
                          ("mean(mean(W))", "gives a Scalar where a Tensor"), ("__import__(W)", "unknown name"),
                          ("add_s(1e99, mean(W))", "not a finite float32")]:
        with pytest.raises(EznasError, match=re.escape(message)):
            simp.parse(text)


def test_every_primitive_exports_and_matches(tmp_path):
    """The generated code of each registered primitive (with the helpers it needs) computes what
    the primitive computes in eznas."""
    values = _random_values()
    st = export.ProxySettings(R=2, s=4, seed=0)
    for spec in P.REGISTRY.values():
        args = tuple(Var(["W", "X_D"][i]) if a is P.Tensor else Call("std", (Var("Z_N"),))
                     for i, a in enumerate(spec.args))
        expr: simp.Expr = Call(spec.name, args)
        if spec.ret is P.Tensor:
            expr = Call("mean", (expr,))
        infix = simp.to_infix(expr)
        meta = {"format": 1, "expression": infix, "raw_expression": infix, "latex": simp.to_latex(expr),
                "settings": {}, "provenance": {}}
        path = tmp_path / f"p_{spec.name}.py"
        path.write_text(export.module_source(expr, meta, st))
        module = export.load_proxy(path, trust=True).__globals__
        assert module["EXPRESSION"] == infix
        got, want = module["program"](values), simp.evaluate(expr, values)
        assert torch.equal(torch.nan_to_num(got, nan=7.5), torch.nan_to_num(want, nan=7.5)), spec.name
