"""Corpus scoring throughput on this CPU (issue 9, part 5): clips/s of `score_corpus` with the local process pool at
1 and 2 workers (and in-process, and on a Dask LocalCluster of 2 workers where dask is installed), on a corpus of
real talking-photo clips (H.264 + AAC, 640x360, 4-8 spoken words each) built once in a temp folder.

Each run starts from an empty output and includes its workers' start-up (spawn, imports, engine load), as a user's
job does; "clip s" is the mean time one clip took inside its worker. With --repeat R the configurations run R times,
interleaved (so a burst of load elsewhere hits all of them), and the median run is shown. Every run's results are
checked to be equal.

Run: .venv/bin/python benchmarks/corpus_cpu.py [--clips 24] [--repeat 1] [--threads-per-worker 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

PHRASES = ["Good morning to you all", "The cat sat on the mat", "Seven wizards judge the boxing match",
           "Please call me back soon", "We will meet again at noon today", "Bring the red book to class",
           "It is raining in the north", "She sells shells by the sea shore"]


def build_corpus(root: Path, clips: int) -> list[Path]:
    from edge_sync.data.talking_photo import make_talking_photo_clip

    paths = []
    for i in range(clips):
        path = root / f"part{i % 3}" / f"clip{i:04d}.mp4"
        make_talking_photo_clip(path, PHRASES[i % len(PHRASES)], offset_frames=(i % 11) - 5, seed=i,
                                speed=140 + 10 * (i % 5))
        paths.append(path)
    return paths


def _differences(reference: dict, results: dict, limit: int = 5) -> list[str]:
    """What differs from the first run, field by field (empty when the results are identical)."""
    out = []
    for path in sorted(set(reference) | set(results)):
        a, b = reference.get(path, {}), results.get(path, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{Path(path).name} {key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--artifact", default=None, help="default: the bundled student ONNX")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from edge_sync._deps import available
    from edge_sync.usecases.corpus import TIMING_FIELDS, read_results, score_corpus

    runs = [("pool", 0), ("pool", 1), ("pool", 2)] + ([("dask", 2)] if available("distributed") else [])
    rows, reference = [], None
    with tempfile.TemporaryDirectory(prefix="edge-sync-corpus-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build_corpus(root / "clips", args.clips)
        build_s = time.perf_counter() - start
        load_before = os.getloadavg()
        measured: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
        for _ in range(args.repeat):
            for runner, workers in runs:
                out = root / f"{runner}{workers}.jsonl"
                summary = score_corpus([root / "clips"], out, artifact=args.artifact, workers=workers,
                                       runner=runner, resume=False, threads_per_worker=args.threads_per_worker,
                                       progress=False)
                results = read_results(out)
                plain = {p: {k: v for k, v in r.items() if k not in TIMING_FIELDS} for p, r in results.items()}
                reference = reference or plain
                measured[(runner, workers)].append({
                    "runner": runner, "workers": workers, "clips": summary.total, "failed": summary.failed,
                    "seconds": summary.seconds, "clips_per_second": summary.clips_per_second,
                    "clip_seconds": round(sum(r["seconds"] for r in results.values()) / len(results), 3),
                    "same_results": plain == reference, "differences": _differences(reference, plain)})
        for run in runs:
            ordered = sorted(measured[run], key=lambda r: r["clips_per_second"])
            rows.append({**ordered[len(ordered) // 2], "all_clips_per_second": [r["clips_per_second"]
                                                                               for r in measured[run]],
                         "same_results": all(r["same_results"] for r in measured[run])})
        load_after = os.getloadavg()

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; corpus of {args.clips} clips built in "
          f"{build_s:.0f} s; threads per worker {args.threads_per_worker}; median of {args.repeat} run(s)\n")
    print("| runner | workers | clips | wall s | clips/s | clips/s, every run | clip s (in worker) | same results |")
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        label = "in-process" if r["runner"] == "pool" and r["workers"] == 0 else r["runner"]
        every = ", ".join(f"{c:.2f}" for c in r["all_clips_per_second"])
        print(f"| {label} | {r['workers'] or '-'} | {r['clips']} | {r['seconds']:.1f} | {r['clips_per_second']:.2f} "
              f"| {every} | {r['clip_seconds']:.2f} | {'yes' if r['same_results'] else 'NO'} |")
    for run in runs:
        for i, r in enumerate(measured[run]):
            if r["differences"]:
                print(f"\n{run[0]} x{run[1]}, run {i + 1} differs from the first run: " + "; ".join(r["differences"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cpu_count": os.cpu_count(), "load_before": load_before,
                                               "load_after": load_after}, indent=2))


if __name__ == "__main__":
    main()
