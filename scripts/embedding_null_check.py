#!/usr/bin/env python3
"""Does the evidence null read off the model's own embeddings decide as the streamed null does?

Why
---
``sync`` measures each clip's evidence null (``edge_sync.runtimes.evidence``). Artifacts exported before session 28
(and models whose embeddings are not separable) run the model three more times for it, on the same crops against
the soundtrack rolled out of alignment, which doubles a file's sync. An artifact that outputs its per-frame unit
embeddings (``contract.embeddings``; the bundled ones since session 28), and a separable PyTorch model, give the
null for a few dot products: the audio embeddings rolled round the case against the video's. It is not the same
number: the roll wraps round the case rather than the soundtrack, and the audio encoder's context near the wrap
differs. This script measures whether the decisions hold: for every case of the real-footage protocol (each clip
as published and with planted shifts), the reading's confidence against its streamed null and against its
embedding null, through the one rule ``sync`` applies (``unsure_reason``: under the evidence floor, or under 1.5x
the null).

Run (the dev venv; 1 and 3 minutes for the 9 hold-out and 16 independent clips on 2 cores; the independent folder
is the one scripts/independent_real_clips.sh builds; ``--model`` takes a checkpoint or an artifact with embeddings):
    .venv/bin/python scripts/embedding_null_check.py --data ../shared/real_clips --clips scripts/real_holdout_in_sync.txt
    .venv/bin/python scripts/embedding_null_check.py --data INDEPENDENT_DIR --clips scripts/independent_in_sync.txt

Session 27, the bundled student (PyTorch): unsure right / wrong answers 0/44, 1/10 (streamed) against 3/44, 1/10
(embedding) on the hold-out, 4/112, 12/14 against the same on the independent clips; the embedding null's median
is 1.006x and 1.059x the streamed one's (docs/real_footage.md, session 27). Session 28 made the embedding null
the one ``sync`` and ``eval`` use wherever the model gives its embeddings.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_sync.cli import _clip_names
from edge_sync.evaluation.real_footage import DEFAULT_PLANTED, TOLERANCE, RealClip, load_real_clip
from edge_sync.runtimes.evidence import embedding_nulls, null_rolls, unsure_reason
from edge_sync.training.evaluate_cli import scorer_for


def both_nulls(scorer: Any, clip: RealClip, planted: Iterable[int] = (0, *DEFAULT_PLANTED)):
    """Per case long enough for both nulls (its soundtrack and the case itself 76+ frames; ``sync`` streams the
    null of a shorter case): (planted, result, streamed nulls, embedding nulls)."""
    k_max = scorer.contract.max_offset
    rolls = clip.null_rolls(k_max)  # the soundtrack's, the same for every case of the clip
    for k in planted:
        inputs = clip.case_inputs(int(k), scorer.contract.video)
        if inputs is None or not rolls or not null_rolls(inputs[1].shape[2], k_max):
            continue
        res, outputs = scorer.run_with_outputs(*inputs)
        streamed = [scorer.run(clip.case_audio(int(k), r), inputs[1]).confidence for r in rolls]
        yield int(k), res, streamed, embedding_nulls(outputs["audio_emb"], outputs["video_emb"], k_max)


def tally(cases: Iterable[tuple[int, Any, list[float], list[float]]], floor: float) -> dict[str, Any]:
    """Unsure counts [unsure, of] per null and answer, and the embedding/streamed ratios of the medians."""
    counts = {(null, answer): [0, 0] for null in ("streamed", "embedding") for answer in ("right", "wrong")}
    ratios = []
    for planted, res, streamed, embedded in cases:
        answer = "right" if abs(res.offset_frames - planted) <= TOLERANCE else "wrong"
        if embedded:
            ratios.append(float(np.median(embedded) / np.median(streamed)))
        for null, values in (("streamed", streamed), ("embedding", embedded)):
            counts[null, answer][0] += unsure_reason(res.confidence, floor, values) is not None
            counts[null, answer][1] += 1
    return {"counts": counts, "ratios": ratios}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="student", help="a PyTorch checkpoint, bundled model or artifact name")
    p.add_argument("--data", type=Path, required=True, help="folder of in-sync real clips")
    p.add_argument("--clips", required=True, help="the list of clips to score (as edge-sync eval --clips)")
    p.add_argument("--floor", type=float, default=0.0124,
                   help="the evidence floor (default: the bundled student's, edge_sync/weights/usecases)")
    args = p.parse_args()
    label, scorer = scorer_for(args.model)
    if not scorer.embeddings:
        raise SystemExit(f"{label} gives no per-frame embeddings to roll")
    cases = [case for name in tqdm(_clip_names(args.clips), desc="clips")
             for case in both_nulls(scorer, load_real_clip(args.data / name, scorer.contract.video))]
    result = tally(cases, args.floor)
    print(f"{label} on {args.data} ({args.clips}), floor {args.floor}")
    for null in ("streamed", "embedding"):
        right, wrong = result["counts"][null, "right"], result["counts"][null, "wrong"]
        print(f"  {null:9s} null: unsure {right[0]}/{right[1]} right answers, {wrong[0]}/{wrong[1]} wrong ones")
    r = np.asarray(result["ratios"])
    print(f"  embedding / streamed null: median {np.median(r):.3f}, median |ratio - 1| {np.median(np.abs(r - 1)):.3f}, "
          f"range {r.min():.2f}..{r.max():.2f} over {len(r)} cases")


if __name__ == "__main__":
    main()
