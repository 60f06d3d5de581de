"""Runtime figures for issue 6 on this CPU, in one run: frames/s of the bundled student through onnxruntime
vs the original SyncNet S (PyTorch, syncnet_python's 20-window batches) at T=100, end-to-end `sync` speed on a
60 s 640x360 talking-face clip, and the runtime's peak RSS (a fresh process, no torch imported).

Run: .venv/bin/python benchmarks/runtime_cpu.py [--repeat 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a probe started from this (torch-loaded) process would
# report the parent's memory
RSS_PROBE = """
import sys, json
sys.modules['torch'] = None
import edge_sync
from edge_sync.bench.measure import peak_rss_mb
engine = edge_sync.load(sys.argv[1], low_memory=sys.argv[3] == "low")
res = engine.sync_file(sys.argv[2])
print(json.dumps({"rss_mb": peak_rss_mb(), "offset": res.main.result.offset_frames, "seconds": res.seconds}))
"""


def _median_time(fn, repeat: int) -> float:
    from edge_sync.bench.measure import timed

    return timed(fn, 1, repeat)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--artifact", default=None, help="default: the bundled student ONNX")
    parser.add_argument("--json", default=None)
    parser.add_argument("--report", default=None, help="also write the figures as Markdown here")
    args = parser.parse_args()
    import torch

    import edge_sync
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.models.legacy import SyncNetS

    t = args.frames
    engine = edge_sync.load(args.artifact)
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 10, (1, 1, 13, 4 * t)).astype(np.float32)
    video = rng.uniform(-1, 1, (1, 3, t, 112, 112)).astype(np.float32)
    student_s = _median_time(lambda: engine.run(audio, video), args.repeat)
    original = SyncNetS().eval()
    mfcc, frames = torch.randn(1, 1, 13, 4 * t + 16), torch.rand(1, 3, t + 4, 224, 224) * 255
    with torch.inference_mode():
        original_s = _median_time(lambda: original.sliding_embeddings(mfcc, frames), max(3, args.repeat // 2))
    rows = {"student_onnx_fps": t / student_s, "original_syncnet_fps": t / original_s}
    rows["speedup_vs_original"] = rows["student_onnx_fps"] / rows["original_syncnet_fps"]

    with tempfile.TemporaryDirectory() as tmp:
        text = " ".join(["We keep talking so the clip lasts a full minute, counting one two three four five."] * 11)
        clip = make_talking_photo_clip(Path(tmp) / "minute.mp4", text, offset_frames=3, size=(640, 360))
        start = time.perf_counter()
        res = engine.sync_file(clip.path)
        wall = time.perf_counter() - start
        seconds = clip.frames / 25
        rows.update({"sync_clip_seconds": seconds, "sync_wall_seconds": wall, "sync_x_realtime": seconds / wall,
                     "sync_offset": res.main.result.offset_frames, "sync_planted": 3})
        for mode in ("low", "default"):  # edge_sync.load(low_memory=True) is the default; see runtimes/memory.py
            probe = subprocess.run([sys.executable, "-c", RSS_PROBE, str(engine.artifact.path), str(clip.path), mode],
                                   capture_output=True, text=True, check=True)
            out = json.loads(probe.stdout.strip().splitlines()[-1])
            rows[f"runtime_peak_rss_mb_{mode}_memory"] = out["rss_mb"]
            rows[f"sync_wall_seconds_{mode}_memory_probe"] = out["seconds"]
    lines = [f"onnxruntime, {engine.backend}, T={t}, median of {args.repeat}; one run on this machine"]
    lines += [f"{k:>36}: {v:.2f}" if isinstance(v, float) else f"{k:>36}: {v}" for k, v in rows.items()]
    print("\n".join(lines))
    if args.report:
        Path(args.report).write_text("# Runtime figures on this CPU\n\nMade by `.venv/bin/python "
                                     "benchmarks/runtime_cpu.py --report " + args.report + "`.\n\n```\n"
                                     + "\n".join(lines) + "\n```\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
