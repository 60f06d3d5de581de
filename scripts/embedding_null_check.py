#!/usr/bin/env python3
"""Would an evidence null read off the model's own embeddings decide as the streamed null does?

Why
---
``sync`` measures each clip's evidence null (``edge_sync.runtimes.evidence``) by running the model three more times,
on the same crops against the soundtrack rolled out of alignment; that doubles its time. A PyTorch sync model (and
an artifact that exported them) already has per-frame unit embeddings of both streams; rolling the audio
embeddings instead of the sound gives the null for the price of a few dot products. It is not the same number:
the roll wraps round the case rather than the soundtrack, and the audio encoder's context near the wrap differs.
This script measures, before any artifact changes, whether the decisions hold: for every case of the real-footage
protocol (each clip as published and with planted shifts), the reading's confidence against its streamed null and
against its embedding null, through the one rule ``sync`` applies (``unsure_reason``: under the evidence floor, or
under 1.5x the null).

Only models whose audio embedding sees the sound alone qualify (no cross-modal attention, no whole-clip temporal
transformer): the bundled student and teacher do.

Run (the dev venv; 1 and 3 minutes for the 9 hold-out and 16 independent clips on 2 cores; the independent folder
is the one scripts/independent_real_clips.sh builds):
    .venv/bin/python scripts/embedding_null_check.py --data ../shared/real_clips --clips scripts/real_holdout_in_sync.txt
    .venv/bin/python scripts/embedding_null_check.py --data INDEPENDENT_DIR --clips scripts/independent_in_sync.txt

Session 27, the bundled student: unsure right / wrong answers 0/44, 1/10 (streamed) against 3/44, 1/10 (embedding)
on the hold-out, 4/112, 12/14 against the same on the independent clips; the embedding null's median is 1.006x and
1.059x the streamed one's (docs/real_footage.md, session 27).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_sync.cli import _clip_names
from edge_sync.evaluation.real_footage import DEFAULT_PLANTED, TOLERANCE, load_real_clip
from edge_sync.models.correlation import shifted_correlation
from edge_sync.runtimes.evidence import null_rolls, unsure_reason
from edge_sync.runtimes.result import curve_confidence, distance_curve
from edge_sync.training.evaluate_cli import scorer_for


def confidence(correlation: np.ndarray) -> float:
    """SyncResult's confidence (median - min of the distance curve) of one [2K+1, T] correlation."""
    return curve_confidence(distance_curve(correlation))


def embedding_nulls(model: torch.nn.Module, audio: np.ndarray, video: np.ndarray, max_offset: int) -> list[float]:
    """The null's confidences from the case's own embeddings, the audio rolled round the case by each roll."""
    with torch.inference_mode():
        a, v = model.embed(torch.from_numpy(audio), torch.from_numpy(video))
        return [confidence(shifted_correlation(v, torch.roll(a, -r, dims=2), max_offset)[0].numpy())
                for r in null_rolls(v.shape[2], max_offset)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="student", help="a PyTorch checkpoint or bundled model name")
    p.add_argument("--data", type=Path, required=True, help="folder of in-sync real clips")
    p.add_argument("--clips", required=True, help="the list of clips to score (as edge-sync eval --clips)")
    p.add_argument("--floor", type=float, default=0.0124,
                   help="the evidence floor (default: the bundled student's, edge_sync/weights/usecases)")
    args = p.parse_args()
    label, scorer = scorer_for(args.model)
    model, k_max = scorer.model, scorer.contract.max_offset
    if not hasattr(model, "embed"):
        raise SystemExit(f"{label} has no per-frame embeddings to roll")
    tally = {(null, answer): [0, 0] for null in ("streamed", "embedding") for answer in ("right", "wrong")}
    ratios = []
    for name in tqdm(_clip_names(args.clips), desc="clips"):
        clip = load_real_clip(args.data / name, scorer.contract.video)
        rolls = clip.null_rolls(k_max)  # the soundtrack's, the same for every case of the clip
        for planted in (0, *DEFAULT_PLANTED):
            inputs = clip.case_inputs(int(planted), scorer.contract.video)
            if inputs is None or not rolls:
                continue
            res = scorer.run(*inputs)
            answer = "right" if abs(res.offset_frames - planted) <= TOLERANCE else "wrong"
            streamed = [scorer.run(clip.case_audio(int(planted), r), inputs[1]).confidence for r in rolls]
            embedded = embedding_nulls(model, *inputs, k_max)
            if embedded:
                ratios.append(np.median(embedded) / np.median(streamed))
            for null, values in (("streamed", streamed), ("embedding", embedded)):
                count = tally[null, answer]
                count[0] += unsure_reason(res.confidence, args.floor, values) is not None
                count[1] += 1
    print(f"{label} on {args.data} ({args.clips}), floor {args.floor}")
    for null in ("streamed", "embedding"):
        right, wrong = tally[null, "right"], tally[null, "wrong"]
        print(f"  {null:9s} null: unsure {right[0]}/{right[1]} right answers, {wrong[0]}/{wrong[1]} wrong ones")
    r = np.asarray(ratios)
    print(f"  embedding / streamed null: median {np.median(r):.3f}, median |ratio - 1| {np.median(np.abs(r - 1)):.3f}, "
          f"range {r.min():.2f}..{r.max():.2f} over {len(r)} cases")


if __name__ == "__main__":
    main()
