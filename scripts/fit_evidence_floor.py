"""Fit the bundled student's evidence floor (the LSE-C under which `edge-sync score` gives no verdict) from an
`edge-sync eval --data` run on real clips with known offsets, and store it beside the use-case heads.

    edge-sync eval --data ../shared/real_clips --clips scripts/real_holdout_in_sync.txt \\
        --model edge_sync/weights/student.onnx-fp32 --model INT8_ARTIFACT -o runs/eval_floor.json
    .venv/bin/python scripts/fit_evidence_floor.py runs/eval_floor.json

Every right answer of every model row pools into the floor (edge_sync.usecases.fitting.evidence_floor).
scripts/fit_usecases.py keeps the floor when it refits the heads of the same model.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from edge_sync._paths import BUNDLED_ARTIFACT
from edge_sync.artifact import read_artifact
from edge_sync.usecases.fitting import EVIDENCE_MARGIN, evidence_floor
from edge_sync.usecases.heads import heads_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluation", type=Path, help="JSON written by edge-sync eval --data DIR -o")
    parser.add_argument("--artifact", type=Path, default=BUNDLED_ARTIFACT, help="whose model's heads get the floor")
    parser.add_argument("--margin", type=float, default=EVIDENCE_MARGIN)
    args = parser.parse_args()
    report = json.loads(args.evaluation.read_text())
    right = [c["confidence"] for m in report["models"] for c in m["cases"] if c["right"]]
    floor = evidence_floor(right, args.margin)
    heads = heads_for(read_artifact(args.artifact).manifest)
    if heads is None or heads.path is None:
        raise SystemExit(f"no use-case heads for {args.artifact}'s model: run scripts/fit_usecases.py first")
    fit = {"rule": f"{args.margin} x the lowest confidence of a right answer", "data": report["data"],
           "models": [m["model"] for m in report["models"]], "right_answers": len(right)}
    evaluation = {k: v for k, v in heads.evaluation.items() if k != "evidence_floor"}  # session 12 kept a copy here
    fitted = dataclasses.replace(heads, evaluation=evaluation, evidence_floor=round(floor, 4), evidence_fit=fit)
    fitted.write(heads.path)
    print(f"evidence floor {floor:.4f} (LSE-C) from {len(right)} right answers -> {heads.path}")


if __name__ == "__main__":
    main()
