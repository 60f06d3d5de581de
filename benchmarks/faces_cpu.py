"""Face front end figures in one run: YuNet (default) vs Haar on real clips and on the 65 s benchmark clip.

Per real clip: share of frames in the main face track, the mouth's frame-to-frame jitter inside the 112 px mouth
crop, and the detector's cost per video frame inside the tracker (all detector calls, whole-frame and around the
tracked face, over the clip's frames). The mouth is located independently of the tracker being measured, by YuNet's
landmarks on every frame (raw detections, no smoothing), so both trackers are judged by the same yardstick. Haar runs
as the front end did before (a whole-frame pass at every detection frame). Then end-to-end `sync` on the 64.9 s
640x360 clip with each detector (wall time, x real time). Last, the per-frame cues ``sync`` reports from the landmarks
(``edge_sync.features.faces.landmark_cues``), read off the same raw YuNet detections: mouth width (mouth corners over
eye distance) and yaw (nose offset from the eye-mouth midline over the eye-mouth distance), 5th to 95th percentile.

Run: .venv/bin/python benchmarks/faces_cpu.py [--clips ../shared/real_clips] [--report docs/faces_cpu.md]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_sync.evaluation.real_footage import find_clips
from edge_sync.errors import NoFaceError
from edge_sync.features.faces import FaceBox, FaceDetector, get_detector, landmark_cues, track_faces
from edge_sync.features.media import iter_frames
from edge_sync.features.video import MOUTH_CENTRE, MOUTH_SIDE

DETECTORS = ("yunet", "haar")
TRACKER_OPTIONS = {"yunet": {}, "haar": {"full_every": None}}  # each as sync uses it; Haar as it was
CROP = 112


class TimedDetector(FaceDetector):
    """Wraps a detector and adds up the seconds spent in it."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner, self.seconds, self.name = inner, 0.0, inner.name

    def detect(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        start = time.perf_counter()
        try:
            return self.inner.detect(frame_rgb)
        finally:
            self.seconds += time.perf_counter() - start

    def detect_region(self, frame_rgb, region, face_size=None) -> list[FaceBox]:
        start = time.perf_counter()
        try:
            return self.inner.detect_region(frame_rgb, region, face_size)
        finally:
            self.seconds += time.perf_counter() - start


def _main_track(frames: list[np.ndarray], detector: TimedDetector) -> dict[int, np.ndarray]:
    """frame -> box xywh of the clip's main (longest) face track; empty when no face track is found."""
    try:
        track = track_faces(frames, detector, detect_every=5, **TRACKER_OPTIONS[detector.name]).largest_track()
    except NoFaceError:
        return {}
    return dict(zip(track.frames.tolist(), track.boxes))


def _jitter(boxes: dict[int, np.ndarray], mouths: dict[int, np.ndarray]) -> float:
    """Median frame-to-frame movement (px of the 112 crop) of the true mouth inside the crop."""
    pos = {}
    for i, b in boxes.items():
        if i in mouths:
            side = MOUTH_SIDE * max(b[2], b[3])
            cx, cy = b[0] + MOUTH_CENTRE[0] * b[2], b[1] + MOUTH_CENTRE[1] * b[3]
            pos[i] = (mouths[i] - np.array([cx, cy])) * CROP / side
    steps = [np.hypot(*(pos[i] - pos[i - 1])) for i in pos if i - 1 in pos]
    return float(np.median(steps)) if steps else float("nan")


def _spread(values: np.ndarray) -> str:
    """5th..95th percentile of a cue over the frames with a detection."""
    v = values[np.isfinite(values)]
    return f"{np.percentile(v, 5):.2f}..{np.percentile(v, 95):.2f}" if v.size else "—"


def clip_rows(root: Path) -> tuple[list[dict], dict[str, list[float]]]:
    rows, cost = [], {d: [] for d in DETECTORS}
    reference = get_detector("yunet")
    for path, group, _ in tqdm(find_clips(root), desc="clips", unit="clip"):
        frames = list(iter_frames(path))
        mouths, best = {}, []
        for i, f in enumerate(frames):
            found = reference.detect(f)
            best.append(max(found, key=lambda b: b.w) if found else None)
            if found:
                mouths[i] = np.mean(best[-1].landmarks[3:5], axis=0)
        row = {"clip": path.name, "group": group, "frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}"}
        for d in DETECTORS:
            det = TimedDetector(get_detector(d))
            boxes = _main_track(frames, det)
            cost[d].append(det.seconds / len(frames))
            row[f"{d} coverage"] = len(boxes) / len(frames)
            row[f"{d} jitter px"] = _jitter(boxes, mouths)
        cues = landmark_cues(best)
        for cue in ("mouth_width", "yaw"):
            row[cue.replace("_", " ")] = _spread(cues[cue])
        rows.append(row)
    return rows, cost


def sync_rows() -> dict[str, float]:
    import edge_sync
    from edge_sync.data.talking_photo import make_talking_photo_clip

    engine = edge_sync.load()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        text = " ".join(["We keep talking so the clip lasts a full minute, counting one two three four five."] * 11)
        clip = make_talking_photo_clip(Path(tmp) / "minute.mp4", text, offset_frames=3, size=(640, 360))
        seconds = clip.frames / 25
        for d in DETECTORS:
            start = time.perf_counter()
            res = engine.sync_file(clip.path, detector=d)  # sync's own tracker settings
            wall = time.perf_counter() - start
            out[f"{d}: sync wall s"] = wall
            out[f"{d}: x real time"] = seconds / wall
            out[f"{d}: offset (planted +3)"] = res.main.result.offset_frames
        out["clip seconds"] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "real_clips")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from edge_sync.training.metrics import metrics_table_markdown

    rows, cost = clip_rows(args.clips)
    sync = sync_rows()
    real = [r for r in rows if r["group"] == "real"]
    summary = {}
    cues = {}
    for cue in ("mouth width", "yaw"):
        lo, hi = zip(*(map(float, r[cue].split("..")) for r in real if r[cue] != "—"))
        cues[cue] = {"median 5th percentile": float(np.median(lo)), "median 95th percentile": float(np.median(hi)),
                     "lowest": min(lo), "highest": max(hi)}
    for d in DETECTORS:
        summary[d] = {"detector ms per frame": 1000 * float(np.median(cost[d])),
                      "clips >= 98% covered": f"{sum(r[f'{d} coverage'] >= 0.98 for r in real)}/{len(real)}",
                      "min coverage": min(r[f"{d} coverage"] for r in real),
                      "median jitter px": float(np.nanmedian([r[f"{d} jitter px"] for r in real])),
                      "sync x real time (65 s clip)": sync[f"{d}: x real time"]}
    table = {r["clip"]: {k: v for k, v in r.items() if k != "clip"} for r in rows}
    text = ("# Face front end on this CPU\n\nMade by `.venv/bin/python benchmarks/faces_cpu.py --report "
            f"{args.report}` in one run (medians over the `real` clips; detector cost = all its calls while tracking a "
            "clip / the clip's frames).\n\n"
            + metrics_table_markdown(summary, name_header="detector") + "\n"
            + "End-to-end `sync` on the 64.9 s 640x360 clip (bundled student, onnxruntime; as `sync` runs by default, "
              "with the evidence null, read off the artifact's embeddings where it outputs them, "
              "[runtime_cpu.md](runtime_cpu.md)):\n\n"
            + metrics_table_markdown({"sync": sync}) + "\n"
            + "Landmark cues on the `real` clips (per clip the 5th and 95th percentile over its frames; `sync` reports "
              "them per frame in `TrackSync.cues`):\n\n"
            + metrics_table_markdown(cues, name_header="cue") + "\n"
            + "Per clip (coverage: share of the clip's frames in its main face track; jitter: median frame-to-frame "
              "movement of the mouth, located by YuNet landmarks on every frame, inside the 112 px mouth crop; mouth "
              "width and yaw: 5th..95th percentile of the cues):\n\n"
            + metrics_table_markdown(table, name_header="clip"))
    print(text)
    if args.report:
        args.report.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cues": cues, "sync": sync, "clips": rows}, indent=1,
                                        default=float))


if __name__ == "__main__":
    main()
