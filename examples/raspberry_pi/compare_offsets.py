#!/usr/bin/env python3
"""Compare two ``app.py --json`` results (x86 and emulated arm64): exit 1 unless the clip offsets are equal.

A separate script (stdlib only) so check_on_arm64.sh stays readable and the comparison rule lives in one place:
the clip offset must be identical; confidence and per-window time are printed, not compared (INT8 kernels differ
between x86 and Arm, and emulated time says nothing about a Pi's).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("x86", type=Path)
    p.add_argument("arm64", type=Path)
    p.add_argument("--planted", type=int, default=None, help="the offset planted in the clip, for the record")
    args = p.parse_args(argv)
    x86, arm = (json.loads(path.read_text()) for path in (args.x86, args.arm64))
    same = x86["offset_frames"] == arm["offset_frames"]
    windows = sorted(arm["timing"]["window_ms"]) or [0.0]
    planted = "" if args.planted is None else f"planted {args.planted:+d} | "
    print(f"RESULT {arm['backend']:11s} {planted}x86 {x86['offset_frames']:+d} (confidence {x86['confidence']:.3f}, "
          f"{x86['track_frames']} frames) | arm64 {arm['offset_frames']:+d} (confidence {arm['confidence']:.3f}, "
          f"{arm['track_frames']} frames) | {'SAME' if same else 'DIFFERENT'} | emulated: "
          f"{len(windows)} model windows of {arm['timing']['window_frames']} frames, median "
          f"{windows[len(windows) // 2]:.0f} ms, whole clip {arm['timing']['total_s']:.1f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
