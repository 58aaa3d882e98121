"""``eznas spaces verify``: every benchmark architecture, built, has the published parameter count."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from eznas import records
from eznas.spaces import get_space

TOLERANCE = 1.5e-6  # records give params in millions rounded to 6 decimals


@dataclass
class VerifyResult:
    checked: int = 0
    matched: int = 0
    mismatches: list[tuple[str, str, float, float]] = field(default_factory=list)  # task, arch, ours, published


def verify_space(space: str, dataset: str | None = None, limit: int | None = None,
                 data_dir: str | None = None, progress: bool = True) -> VerifyResult:
    sp = get_space(space)
    tasks = records.load_tasks(sp.name, data_dir)
    if dataset is not None:
        tasks = {dataset: records.load_task(sp.name, dataset, data_dir)}
    res = VerifyResult()
    with torch.no_grad():
        for name, task in tasks.items():
            if "params" not in task.published:
                continue
            n = len(task) if limit is None else min(limit, len(task))
            for i in tqdm(range(n), desc=f"{space}/{name}", disable=not progress, leave=False):
                ours = sp.param_count(sp.build(task.archs[i], name))
                pub = float(task.published["params"][i])
                res.checked += 1
                if abs(ours - pub) <= TOLERANCE:
                    res.matched += 1
                else:
                    res.mismatches.append((name, task.archs[i], ours, pub))
    return res


def cmd_spaces_verify(args: argparse.Namespace) -> int:
    res = verify_space(args.space, args.dataset, args.limit, args.data_dir, progress=sys.stderr.isatty())
    for task, arch, ours, pub in res.mismatches[:10]:
        print(f"mismatch {task} {arch}: built {ours:.6f} M, published {pub:.6f} M")
    print(f"checked {res.checked}, matched {res.matched}")
    return 0 if res.checked > 0 and res.matched == res.checked else 1
