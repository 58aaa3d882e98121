"""`eznas score` with a set-level proxy: ranks within the given --archs set; refuses a single arch."""
from __future__ import annotations

import csv

from eznas import cli
from eznas.proxies import score_set
from eznas.proxies.aznas import az_components
from eznas.batches import make_batches
from eznas.spaces import build

ARCHS = ["(0, 2, 3, 2, 3, 1)", "(3, 3, 3, 3, 3, 3)", "(1, 1, 1, 1, 1, 1)"]


def test_az_nas_scores_an_archs_file(data_dir, tmp_path, capsys):
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(ARCHS) + "\n")
    out = tmp_path / "scores.csv"
    rc = cli.main(["score", "--proxy", "az_nas", "--proxy", "params", "--space", "nb201", "--archs", str(archs),
                   "--batch-size", "8", "--data-dir", str(data_dir), "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "ranks each architecture within the 3 given" in err
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["arch"] for r in rows] == ARCHS
    b = make_batches("cifar10", 8, 0, num_classes=10, root=data_dir)
    comps = [az_components(build("nb201", a, "cifar10", seed=0), b.D, b.targets) for a in ARCHS]
    assert [float(r["az_nas"]) for r in rows] == score_set("az_nas", comps)
    # ranks within the set: the same net scores differently in a smaller set
    archs.write_text("\n".join(ARCHS[:2]) + "\n")
    assert cli.main(["score", "--proxy", "az_nas", "--space", "nb201", "--archs", str(archs),
                     "--batch-size", "8", "--data-dir", str(data_dir)]) == 0
    two = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [float(r["score"]) for r in two] == score_set("az_nas", comps[:2])


def test_single_arch_refused_with_one_line(data_dir, capsys):
    rc = cli.main(["score", "--proxy", "az_nas", "--space", "nb201", "--arch", ARCHS[0], "--data-dir", str(data_dir)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set-level proxy" in err[0] and "--archs" in err[0]
