#!/usr/bin/env python3
"""Run the TensorRT engine of an edge-sync artifact: latency over N runs, then one clip's audio/video offset.

    python3 run_engine.py ARTIFACT                      # model.plan via TensorRT's runtime API (edge-sync's backend)
    python3 run_engine.py ARTIFACT --video talk.mp4     # + the clip's offset (decode, face track, MFCC, engine)
    python3 run_engine.py ARTIFACT --backend onnxruntime --video talk.mp4   # same model.onnx on the CPU

ARTIFACT is the folder ``edge-sync export --target tensorrt`` wrote, after ``python3 build_engine.py`` (or the
manifest's trtexec line) put model.plan in it. Latency is ``engine.run`` on one contract-shaped clip of --frames
frames (host->device copies, the engine, device->host copies and the numpy result), timed after --warmup calls.
Exit status: 0 ok, 1 failed, 2 bad arguments, 3 TensorRT not importable.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jetson_common import EXIT_FAILED, describe, fail, open_engine

PROG = "run_engine.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Time an edge-sync TensorRT engine and sync a clip with it.")
    p.add_argument("artifact", type=Path, help="tensorrt artifact folder (edge-sync export --target tensorrt) "
                                               "holding model.plan")
    p.add_argument("--backend", default="tensorrt", choices=("tensorrt", "onnxruntime", "auto"),
                   help="tensorrt runs model.plan; onnxruntime runs the same model.onnx on the CPU (default: "
                        "%(default)s)")
    p.add_argument("--frames", type=int, default=100, help="video frames per timed call (default: %(default)s)")
    p.add_argument("--runs", type=int, default=100, help="timed calls (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (default: %(default)s)")
    p.add_argument("--video", type=Path, help="also measure this clip's offset (a video file with a face and sound)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    if args.frames < 1 or args.runs < 1 or args.warmup < 0:
        p.error(f"need --frames >= 1, --runs >= 1, --warmup >= 0; got {args.frames}, {args.runs}, {args.warmup}")
    if args.video is not None and not args.video.is_file():
        p.error(f"--video {args.video}: no such file")
    return args


def measure(engine: Any, frames: int, runs: int, warmup: int) -> dict[str, Any]:
    """Median and p90 wall time of ``engine.run`` on one clip of ``frames`` frames (the contract's shapes)."""
    from edge_sync.spec import example_inputs

    audio, video = example_inputs(engine.contract, frames)
    for _ in range(warmup):
        engine.run(audio, video)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(audio, video)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000.0
    median = float(np.median(ms))
    return {"frames": frames, "runs": runs, "warmup": warmup, "median_ms": round(median, 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3), "frames_per_s": round(frames / median * 1000.0, 1),
            "real_time_factor": round(median / (frames * 40.0), 5), "windows": -(-frames // engine.window_frames)}


def sync_clip(engine: Any, video: Path) -> dict[str, Any]:
    """The whole pipeline on a file; the SDK's media and face errors become one line."""
    from edge_sync.errors import EdgeSyncError

    try:
        return engine.sync_file(video).to_dict(per_frame=False)
    except EdgeSyncError as exc:
        fail(PROG, str(exc), EXIT_FAILED)


def report(engine: Any, latency: dict[str, Any], clip: dict[str, Any] | None) -> str:
    lines = [f"artifact:  {describe(engine)}",
             f"latency:   T={latency['frames']} frames ({latency['frames'] * 0.04:.1f} s of video), batch 1, "
             f"{latency['runs']} runs after {latency['warmup']} warm-up: median {latency['median_ms']:.2f} ms, "
             f"p90 {latency['p90_ms']:.2f} ms, {latency['frames_per_s']:,.0f} frames/s "
             f"(real-time factor {latency['real_time_factor']:.4f})"]
    if latency["windows"] > 1:
        lines.append(f"           ({latency['windows']} windows of {engine.window_frames} frames per call)")
    if clip is not None:
        lines.append(f"clip:      {clip['path']}: offset {clip['offset_frames']:+d} frames "
                     f"({clip['audio_delay_ms']:+.0f} ms, sound late if +; syncnet_python AV offset "
                     f"{clip['av_offset']:+d}), confidence {clip['confidence']:.3f}, {clip['num_frames']} frames, "
                     f"{clip['seconds']:.1f} s end to end")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = open_engine(PROG, args.artifact, args.backend)
    latency = measure(engine, args.frames, args.runs, args.warmup)
    clip = sync_clip(engine, args.video) if args.video is not None else None
    if args.json:
        print(json.dumps({"artifact": str(engine.artifact.path), "backend": engine.backend,
                          "precision": engine.manifest.get("precision"), "latency": latency, "clip": clip}))
    else:
        print(report(engine, latency, clip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
