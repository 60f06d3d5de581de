"""Parameter counts and PyTorch CPU latency per 100 frames for legacy, teacher and student.

Run: .venv/bin/python benchmarks/models_cpu.py [--frames 100] [--repeat 5] [--json out.json]
A benchmark, not a test: it prints medians from one run; the machine is noisy, compare ratios.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from edge_sync.models.io import parameter_count
from edge_sync.models.legacy import LegacySyncNetFCN, SyncNetS
from edge_sync.models.student import X3DStudent
from edge_sync.models.teacher import SyncNetFCN


def _time(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t = args.frames
    mouth = (torch.randn(1, 1, 13, 4 * t), torch.randn(1, 3, t, 112, 112))
    face = (torch.randn(1, 1, 13, 4 * t), torch.rand(1, 3, t, 224, 224) * 255)
    original = SyncNetS().eval()
    cases = {
        "legacy SyncNet S (sliding windows, as syncnet_python)": (
            original, lambda: original.sliding_embeddings(torch.randn(1, 1, 13, 4 * t + 16),
                                                          torch.rand(1, 3, t + 4, 224, 224) * 255)),
        "legacy SyncNet S (FCN form)": (LegacySyncNetFCN.from_sliding(original).eval(), None),
        "teacher SyncNetFCN": (SyncNetFCN().eval(), None),
        "student X3D (2+1)D": (X3DStudent().eval(), None),
    }
    rows = []
    for name, (model, fn) in cases.items():
        if fn is None:
            inputs = face if isinstance(model, LegacySyncNetFCN) else mouth
            fn = (lambda m, x: (lambda: m(*x)))(model, inputs)
        with torch.inference_mode():
            times = _time(fn, args.repeat)
        median = statistics.median(times)
        rows.append({"model": name, "params": parameter_count(model), "frames": t,
                     "median_ms": median * 1e3, "ms_per_100_frames": median * 1e3 * 100 / t,
                     "frames_per_s": t / median})
    base = rows[0]["frames_per_s"]
    print(f"PyTorch {torch.__version__} CPU, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"T={t}, median of {args.repeat}")
    print("| model | parameters | ms / 100 frames | frames/s | x original |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['ms_per_100_frames']:.1f} | {r['frames_per_s']:.0f} | "
              f"{r['frames_per_s'] / base:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
