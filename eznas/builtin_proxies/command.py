"""``eznas proxies list`` / ``eznas proxies show NAME``: the built-in evolved proxies and baselines."""
from __future__ import annotations

import argparse

from eznas.builtin_proxies import describe, names, read


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def cmd_proxies_list(args: argparse.Namespace) -> int:
    from eznas.proxies import proxy_names

    rows = []
    for name in names():
        b = read(name)
        rhos = [r["spearman"] for r in b.test.values() if isinstance(r.get("spearman"), (int, float))]
        mean = f"{sum(rhos) / len(rhos):.3f}" if rhos else "-"
        val = b.provenance.get("validate")
        rows.append((name, f"{val:.3f}" if isinstance(val, (int, float)) else "-", mean, str(len(rhos)),
                     _short(b.expression)))
    print("built-in evolved proxies (eznas proxies show NAME for provenance and test figures):")
    if rows:
        head = ("name", "validation", "test rho (mean)", "tasks", "expression")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        for r in [head, *rows]:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    else:
        print("  (none)")
    print(f"baselines: {', '.join(proxy_names())}")
    return 0


def cmd_proxies_show(args: argparse.Namespace) -> int:
    print(describe(args.name))
    return 0
