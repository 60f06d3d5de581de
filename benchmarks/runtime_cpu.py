"""Runtime figures on this CPU, in one run: frames/s of the bundled student through onnxruntime vs the original
SyncNet S (PyTorch, syncnet_python's 20-window batches) at T=100; end-to-end `sync` on a 64.9 s 640x360
talking-face clip (wall time, x real time, peak RSS) with YuNet, with YuNet and no evidence null (--no-null-check),
and with Haar; and where the time goes, per stage.

Every `sync` runs in a fresh process without torch, as a device app would: it loads the bundled student, syncs the
clip once (cold: peak RSS is this process's VmHWM after it) and once more (warm). ``--baseline DIR`` times another
checkout of the project (e.g. ``git worktree add /tmp/base <commit>``) the same way, its runs alternating with this
checkout's over ``--rounds`` rounds, so both see the same machine load; medians are reported.

Stage times are the seconds spent inside each stage during one warm `sync` (timers wrapped around the stage's calls).
This checkout streams crops through the model in a second thread while the first decodes and tracks, so its stages
overlap and add up to more than the wall time.

``--spin-row`` adds this checkout with onnxruntime's intra-op threads left spinning while they wait (onnxruntime's
own default, ``session.intra_op.allow_spinning=1``, set in that probe process only; the library turns it off because
on 2 cores the spinning takes the core the decoding thread needs).

Run: .venv/bin/python benchmarks/runtime_cpu.py [--repeat 7] [--rounds 3] [--baseline DIR] [--spin-row]
     [--report FILE.md] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh process with PYTHONPATH at the checkout to time: argv = clip, detector, mode ("sync" or "stages"),
# "spin" to create onnxruntime sessions with intra-op spinning on (what --spin-row measures), and "nonull" to leave
# out the evidence null (sync --no-null-check: what it costs).
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a probe started from this (torch-loaded) process would report
# the parent's memory.
PROBE = r"""
import collections, json, sys, time
sys.modules['torch'] = None
import edge_sync
from edge_sync.bench.measure import peak_rss_mb
from edge_sync.runtimes import file_sync

clip, detector, mode = sys.argv[1:4]
seconds = collections.Counter()
if "spin" in sys.argv[4:]:
    from edge_sync import _ort
    _ort.ALLOW_SPINNING = "1"

def timed(name, fn):
    def wrap(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start
    return wrap

if mode == "stages":
    frames = file_sync.iter_frames
    def iter_frames(*args, **kwargs):
        it = frames(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                return
            finally:
                seconds["video decode + RGB"] += time.perf_counter() - start
            yield frame
    file_sync.iter_frames = iter_frames
    file_sync.read_audio = timed("audio decode", file_sync.read_audio)
    file_sync.probe_for_sync = timed("probe", file_sync.probe_for_sync)
    Tracker, Syncer = file_sync.FaceTracker, file_sync.FileSyncer
    class TimedTracker(Tracker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.detector.detect = timed("face detector", self.detector.detect)
            self.detector.detect_region = timed("face detector", self.detector.detect_region)
        push = timed("tracker", Tracker.push)
        finish = timed("tracker", Tracker.finish)
    class TimedSyncer(Syncer):
        add = timed("stream", Syncer.add)
        finish = timed("stream", Syncer.finish)
    file_sync.FaceTracker, file_sync.FileSyncer = TimedTracker, TimedSyncer

engine = edge_sync.load()
if mode == "stages":
    engine._session.run = timed("model (onnxruntime)", engine._session.run)
walls = []
for _ in range(2):
    seconds.clear()
    start = time.perf_counter()
    res = engine.sync_file(clip, detector=detector, **({"null_check": False} if "nonull" in sys.argv[4:] else {}))
    walls.append(time.perf_counter() - start)
    if not walls[1:]:
        rss = peak_rss_mb()
out = {"cold_s": walls[0], "warm_s": walls[1], "rss_mb": rss, "offset": res.main.result.offset_frames}
if mode == "stages":
    s = dict(seconds)
    s["tracker (besides the detector)"] = s.pop("tracker") - s["face detector"]
    s["stream (MFCC, windows, cues)"] = s.pop("stream") - s["model (onnxruntime)"]
    out["stages"] = s
print(json.dumps(out))
"""


def _median_time(fn, repeat: int) -> float:
    from edge_sync.bench.measure import timed

    return timed(fn, 1, repeat)[0]


def probe(checkout: Path, clip: Path, detector: str, mode: str = "sync", *flags: str) -> dict:
    """One fresh process syncing ``clip`` with the code of ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(clip), detector, mode, *flags], capture_output=True,
                          text=True, env=env, cwd=str(checkout))
    if done.returncode:
        raise RuntimeError(f"the sync probe failed for {checkout}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _commit(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def model_rows(args: argparse.Namespace) -> tuple[dict, str]:
    import torch

    import edge_sync
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
    return rows, engine.backend


def sync_rows(clip: Path, seconds: float, runs: dict[str, tuple], rounds: int) -> dict[str, dict]:
    """Alternating rounds of every run (checkout, detector, probe flags...); medians of wall times, the highest
    peak RSS."""
    got: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (checkout, detector, *flags) in runs.items():
            got[name].append(probe(checkout, clip, detector, "sync", *flags))
    out = {}
    for name, rs in got.items():
        warm = float(np.median([r["warm_s"] for r in rs]))
        out[name] = {"sync wall s (warm)": warm, "x real time": seconds / warm,
                     "cold s (first sync in the process)": float(np.median([r["cold_s"] for r in rs])),
                     "peak RSS MB": max(r["rss_mb"] for r in rs), "offset (planted +3)": rs[-1]["offset"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of fresh sync processes")
    parser.add_argument("--artifact", default=None, help="default: the bundled student ONNX")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout to time the same way (a git worktree of an earlier commit)")
    parser.add_argument("--spin-row", action="store_true",
                        help="also time this checkout with onnxruntime's intra-op threads spinning (its own default, "
                             "session.intra_op.allow_spinning=1, set in the probe process)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--report", default=None, help="also write the figures as Markdown here")
    args = parser.parse_args()
    from edge_sync.data.talking_photo import make_talking_photo_clip
    from edge_sync.training.metrics import metrics_table_markdown

    rows, backend = model_rows(args)
    with tempfile.TemporaryDirectory() as tmp:
        text = " ".join(["We keep talking so the clip lasts a full minute, counting one two three four five."] * 11)
        clip = make_talking_photo_clip(Path(tmp) / "minute.mp4", text, offset_frames=3, size=(640, 360))
        seconds = clip.frames / 25
        runs = {"this checkout, yunet": (ROOT, "yunet"),
                "this checkout, yunet, --no-null-check": (ROOT, "yunet", "nonull"),
                "this checkout, haar": (ROOT, "haar")}
        if args.spin_row:
            runs["this checkout, yunet, onnxruntime threads spinning"] = (ROOT, "yunet", "spin")
        if args.baseline is not None:
            runs["baseline, yunet"] = (args.baseline.resolve(), "yunet")
        sync = sync_rows(clip.path, seconds, runs, args.rounds)
        stages = {"this checkout, yunet": probe(ROOT, clip.path, "yunet", "stages")["stages"]}
        if args.baseline is not None:
            stages["baseline, yunet"] = probe(args.baseline.resolve(), clip.path, "yunet", "stages")["stages"]
    order = list(next(iter(stages.values())))
    stage_table = {stage: {run: s.get(stage, float("nan")) for run, s in stages.items()} for stage in order}
    base = f", baseline: {args.baseline} at commit {_commit(args.baseline)}" if args.baseline is not None else ""
    lines = [f"onnxruntime ({backend}), T={args.frames}, median of {args.repeat}; one run on this machine"]
    lines += [f"{k:>28}: {v:.2f}" for k, v in rows.items()]
    text = ("# Runtime figures on this CPU\n\nMade by `.venv/bin/python benchmarks/runtime_cpu.py"
            + (f" --baseline {args.baseline}" if args.baseline is not None else "")
            + (" --spin-row" if args.spin_row else "")
            + (f" --report {args.report}" if args.report else "") + f"` in one run ({os.cpu_count()} CPUs; this "
            f"checkout at commit {_commit(ROOT)}{base}).\n\n"
            "The bundled student vs the original SyncNet S architecture:\n\n```\n" + "\n".join(lines) + "\n```\n\n"
            f"`sync` end to end on a {seconds:.1f} s 640x360 talking-face clip, each in a fresh process without torch "
            f"(medians of {args.rounds} alternating rounds; warm = the second sync in the process; peak RSS = the "
            "process's VmHWM after its first sync, the highest of the rounds; '--no-null-check': without the "
            "evidence null (read off the artifact's embeddings where it outputs them, else three more model streams "
            "per face segment)"
            + ("; 'onnxruntime threads spinning': the same code with onnxruntime's default "
               "`session.intra_op.allow_spinning=1` set in that process (the library sets 0)" if args.spin_row else "")
            + "):\n\n"
            + metrics_table_markdown(sync, name_header="run") + "\n"
            "Seconds spent in each stage during one warm `sync` (yunet). This checkout streams crops through the model "
            "in a second thread while the first decodes and tracks, so its stages overlap:\n\n"
            + metrics_table_markdown(stage_table, name_header="stage"))
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": rows, "sync": sync, "stages": stages}, indent=2))


if __name__ == "__main__":
    main()
