"""Table scoring (eznas/nas/table.py): one network per (dataset, cell) scored by every proxy, rows
kept through a deadline and continued by a rerun, and equal to ``eznas score`` on the same cell."""
from __future__ import annotations

import math

import pytest

from eznas import builtin_proxies, cli
from eznas.fanout import Fanout
from eznas.nas.table import CellJob, TableFile, program_settings, run_table, score_cell

CELLS = ["(2, 1, 2, 4, 2, 4)", "(3, 1, 2, 2, 0, 3)", "(4, 2, 2, 3, 3, 4)"]


def job(arch: str, baselines=("params", "nwot"), programs=()) -> CellJob:
    settings = program_settings(builtin_proxies.read("eznas-nb201").settings)
    return CellJob("ImageNet16-120", arch, 0, 16, None, "cpu", tuple(baselines), tuple(programs), settings)


def test_deadline_keeps_finished_rows_and_a_rerun_continues(tmp_path):
    path = tmp_path / "ImageNet16-120.csv"
    files = {"ImageNet16-120": TableFile(path, ["params", "nwot"])}
    prog = run_table([job(a) for a in CELLS], files, Fanout("serial"), deadline=0.0)  # already past
    assert prog.done == 1 and path.exists()
    again = TableFile(path, ["params", "nwot"])
    assert list(again.rows) == CELLS[:1] and not again.missing(CELLS[0]) and again.missing(CELLS[1])
    todo = [job(a) for a in CELLS if again.missing(a)]
    assert run_table(todo, {"ImageNet16-120": again}, Fanout("serial"), deadline=None).done == 2
    final = TableFile(path, [])
    assert list(final.rows) == CELLS and final.columns == ["params", "nwot"]
    assert all(math.isfinite(final.rows[a]["nwot"]) for a in CELLS)


def test_cell_scores_equal_eznas_score(capsys):
    expr = builtin_proxies.read("eznas-nb201").expression
    got = score_cell(job(CELLS[1], baselines=("nwot", "meco"), programs=(("eznas-nb201", expr),)))
    assert all(err is None for _, _, err in got.values())
    rc = cli.main(["score", "--proxy", "eznas-nb201", "--proxy", "nwot", "--proxy", "meco", "--space", "nb201",
                   "--dataset", "ImageNet16-120", "--arch", CELLS[1], "--batch-size", "16", "--device", "cpu"])
    assert rc == 0
    ref = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    for name in ("eznas-nb201", "nwot", "meco"):
        assert got[name][0] == pytest.approx(float(ref[name]), rel=1e-6), name
