"""On a CUDA machine: statistics on CPU vs CUDA agree, and how fast CUDA records them.

1. Agreement: ``--nets`` NB201 cifar10 networks (full size, batch 64, the config defaults R=16,
   s=8) recorded on the CPU and on CUDA with the same seed. Per (network, unit, tensor) the
   relative error ||cuda - cpu|| / ||cpu|| of the sketched values (float32, before storage) and
   after the float16 storage round trip; the statistics agree when the 99th percentile of the
   relative error is <= ``--tolerance`` (default 1e-2: TF32 convolutions, cuDNN's algorithms and
   float16 storage each move the last bits) and the per-network ranking by a summary statistic
   (mean |A_D| over units) has Spearman rho >= 0.999.
2. Throughput: networks per second of recording (build + three forward/backward passes + sketches,
   as one `eznas stats` job) on CUDA for ``--throughput-nets`` networks after ``--warmup`` ones,
   and on the CPU for comparison (target >= 30 nets/s on CUDA).

    python experiments/gpu_check.py [--nets 20] [--throughput-nets 64] [--device cuda]

Writes experiments/results/gpu/gpu_check.json. Without CUDA it exits (status 1) with one message;
``--device cpu --smoke`` runs the same code CPU against CPU on tiny networks (what the tests do).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from eznas.errors import run_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "experiments" / "results" / "gpu" / "gpu_check.json"


def agreement(reference: list, other: list, tolerance: float) -> dict:
    """Relative errors per (net, unit, tensor) between two devices' statistics (float32 and after
    float16 storage) and the Spearman rho of a per-network summary (mean |A_D|)."""
    import torch
    from scipy.stats import spearmanr

    from eznas import runtime

    rel32, rel16, s_ref, s_oth = [], [], [], []
    a_d = runtime.INDEX["A_D"]
    for v_ref, v_oth in zip(reference, other):
        f_r, f_o = v_ref.flatten(2), v_oth.flatten(2)  # (units, 22, R*s*s)
        rel32.append(((f_o - f_r).norm(dim=-1) / f_r.norm(dim=-1).clamp_min(1e-30)).flatten())
        q_r = runtime.decode(*runtime.encode(v_ref, "float16")).flatten(2)
        q_o = runtime.decode(*runtime.encode(v_oth, "float16")).flatten(2)
        rel16.append(((q_o - q_r).norm(dim=-1) / q_r.norm(dim=-1).clamp_min(1e-30)).flatten())
        s_ref.append(float(v_ref[:, a_d].abs().mean()))
        s_oth.append(float(v_oth[:, a_d].abs().mean()))
    r32, r16 = torch.cat(rel32), torch.cat(rel16)
    nonzero = torch.cat([r.flatten(2).norm(dim=-1).flatten() > 0 for r in reference])  # empty tensors: skip
    r32, r16 = r32[nonzero], r16[nonzero]
    rho = float(spearmanr(s_ref, s_oth)[0]) if len(reference) >= 3 else float("nan")
    p99 = float(r32.quantile(0.99))
    return {"nets": len(reference), "tensors_compared": int(r32.numel()),
            "rel_err_float32_median": float(r32.median()), "rel_err_float32_p99": p99,
            "rel_err_float32_max": float(r32.max()), "rel_err_float16_median": float(r16.median()),
            "rel_err_float16_p99": float(r16.quantile(0.99)), "summary_spearman": rho, "tolerance_p99": tolerance,
            "agree": bool(p99 <= tolerance and (rho >= 0.999 or len(reference) < 3))}


def nets_per_second(compute, archs: list[str], warmup: list[str], device) -> float:
    """Networks recorded per second on ``device`` after ``warmup`` networks."""
    import torch

    for arch in warmup:
        compute(arch, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for arch in archs:
        compute(arch, device)  # returns CPU tensors, so CUDA work is finished
    return len(archs) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=20, help="networks compared on CPU and CUDA")
    ap.add_argument("--throughput-nets", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cpu-nets", type=int, default=5, help="networks timed on the CPU for comparison")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tolerance", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny networks (width 4, depth 1, batch 8, R 4, s 4)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from eznas import records
    from eznas.devices import resolve
    from eznas.stats import StatsSettings, compute_net, net_batches

    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"gpu_check: no CUDA device here (torch {torch.__version__}); this script compares CPU "
                         f"and CUDA statistics and times CUDA throughput, so run it on a GPU machine")
    device = resolve(args.device, "--device")
    task = records.load_task("nb201", "cifar10", args.data_dir)
    rng = np.random.default_rng(args.seed)
    n_all = min(args.nets + args.throughput_nets + args.warmup, len(task.archs))
    archs = [task.archs[i] for i in rng.choice(len(task.archs), size=n_all, replace=False)]
    tiny = dict(batch_size=8, R=4, s=4, width=4, depth=1) if args.smoke else dict(batch_size=64)
    st = StatsSettings("nb201", "cifar10", seed=args.seed, **tiny)
    batches = net_batches(st, args.data_dir)

    def compute(arch: str, dev: torch.device) -> torch.Tensor:
        return compute_net(arch, st, batches, device=dev)[0]

    cpu = torch.device("cpu")
    compared = archs[: args.nets]
    agree = agreement([compute(a, cpu) for a in compared], [compute(a, device) for a in compared], args.tolerance)
    agree.update(tf32_conv=bool(torch.backends.cudnn.allow_tf32),
                 tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32))
    print(json.dumps(agree, indent=1))
    tp_nets = archs[args.nets: args.nets + args.throughput_nets] or compared
    warm = archs[: args.warmup]
    rate = nets_per_second(compute, tp_nets, warm, device)
    cpu_rate = nets_per_second(compute, tp_nets[: args.cpu_nets], warm[:1], cpu)
    speed = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
             "nets": len(tp_nets), "batch_size": st.batch_size, "nets_per_s": round(rate, 2),
             "cpu_nets_per_s": round(cpu_rate, 3), "cpu_threads": torch.get_num_threads(),
             "target_nets_per_s": 30, "meets_target": rate >= 30}
    print(json.dumps(speed, indent=1))
    doc = {"torch": torch.__version__, "smoke": args.smoke, "agreement": agree, "throughput": speed}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"written {out}")
    return doc


if __name__ == "__main__":
    run_main(main, Path(__file__).name)
