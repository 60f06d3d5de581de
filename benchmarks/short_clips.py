"""Short cuts of real in-sync clips: how often ``sync`` reads them right, and how often it says UNSURE.

Each clip of a list (default: the in-sync hold-out) is cut to L seconds near its start and near its end (FFmpeg
CLI, H.264 + AAC), as cut and with its sound moved by +-6 and +-10 frames (read that much earlier or later in the source),
and read by ``engine.sync_file`` with the evidence null. A reading is right within +-1 frame of the planted shift.
Why: until session 29 a soundtrack under 3.04 s had no null and only the floor judged it; 1 s cuts read right about
half the time at higher confidence than whole clips, so ``fix`` moved intact clips and ``desync`` flagged them.

Run: .venv/bin/python benchmarks/short_clips.py [--lengths 1,2,3] [--clips scripts/real_holdout_in_sync.txt]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from tqdm import tqdm

import edge_sync
from edge_sync.cli import _clip_names
from edge_sync.spec import FRAME_MS

SHIFTS = (0, 6, -6, 10, -10)


def cut(src: Path, start: float, seconds: float, shift: int, out: Path) -> Path:
    """``seconds`` of ``src`` from ``start``, its sound ``shift`` frames late (+) or early."""
    sound_from = start - shift * FRAME_MS / 1000.0
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{start:.3f}", "-t", f"{seconds:.3f}", "-i", str(src),
                    "-ss", f"{sound_from:.3f}", "-t", f"{seconds:.3f}", "-i", str(src), "-map", "0:v", "-map", "1:a",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac", "-ar", "16000", str(out)],
                   check=True)
    return out


def duration(path: Path) -> float:
    return float(subprocess.check_output(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                          "csv=p=0", str(path)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/real_clips"))
    parser.add_argument("--clips", default="scripts/real_holdout_in_sync.txt")
    parser.add_argument("--lengths", default="1,1.5,2,3", help="cut lengths in seconds, comma-separated")
    parser.add_argument("--artifact", default="student-int8")
    parser.add_argument("-o", "--output", type=Path, default=None, help="every reading as JSON")
    args = parser.parse_args()
    engine = edge_sync.load(args.artifact)
    lengths = [float(x) for x in args.lengths.split(",")]
    jobs = []
    for name in _clip_names(args.clips):
        total = duration(args.data / name)
        for seconds in lengths:
            for start in (0.5, total - seconds - 0.5):
                jobs += [(name, seconds, start, shift) for shift in SHIFTS
                         if start >= 0 and start - shift * FRAME_MS / 1000.0 >= 0 and start + seconds <= total]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, seconds, start, shift in tqdm(jobs, desc="short cuts", unit="cut"):
            sync = engine.sync_file(cut(args.data / name, start, seconds, shift, Path(tmp) / "cut.mp4"))
            rows.append({"clip": name, "seconds": seconds, "start": round(start, 3), "planted": shift,
                         "detected": sync.offset_frames, "confidence": round(sync.confidence, 4),
                         "evidence_ratio": sync.evidence_ratio, "unsure": sync.low_evidence,
                         "no_speech": sync.no_speech})
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1))
    print(f"| cut | readings | right +-1 | unsure right | unsure wrong |\n|---|---|---|---|---|")
    for seconds in lengths:
        rs = [r for r in rows if r["seconds"] == seconds and not r["no_speech"]]
        right = [abs(r["detected"] - r["planted"]) <= 1 for r in rs]
        unsure_right = sum(r["unsure"] and ok for r, ok in zip(rs, right))
        unsure_wrong = sum(r["unsure"] and not ok for r, ok in zip(rs, right))
        print(f"| {seconds:g} s | {len(rs)} | {sum(right)} | {unsure_right}/{sum(right)} | "
              f"{unsure_wrong}/{len(rs) - sum(right)} |")


if __name__ == "__main__":
    main()
