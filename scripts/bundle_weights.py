"""Copy trained checkpoints into edge_sync/weights/ (float16, a few MB), export the bundled student's ONNX
artifact (so `edge-sync sync` runs without PyTorch), and write NAME.json with recipe, hash and hold-out metrics.

Run by `bash scripts/train_bundled.sh bundle`.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from edge_sync.exporters.api import export
from edge_sync.models.io import load, parameter_count, save_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "edge_sync" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher checkpoint to bundle (omit to keep the bundled one)")
    parser.add_argument("--student", help="student checkpoint to bundle (omit to keep the bundled one)")
    parser.add_argument("--eval", required=True, help="JSON written by edge-sync eval on the hold-out set")
    args = parser.parse_args()
    evaluation = json.loads(Path(args.eval).read_text())
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for name, src in (("teacher", args.teacher), ("student", args.student)):
        if src is None:
            continue
        model = load(src)
        dst = WEIGHTS / f"{name}.pt"
        digest = save_checkpoint(model, dst, meta={**model.checkpoint_meta, "bundled_from": Path(src).name}, half=True)
        meta = model.checkpoint_meta
        info = {"kind": model.kind, "sha256": digest, "params": parameter_count(model), "bytes": dst.stat().st_size,
                "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"), "device": meta.get("device"),
                "recipe": meta.get("recipe"),
                "holdout": {k: evaluation[k] for k in ("data", "seed", "count", "frames")}
                | {"metrics": evaluation["models"].get(src)}}
        dst.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"bundled {dst} ({dst.stat().st_size / 1e6:.2f} MB)")
    artifact = WEIGHTS / "student.onnx-fp32"
    shutil.rmtree(artifact, ignore_errors=True)
    print(f"exported {export(WEIGHTS / 'student.pt', 'onnx', 'fp32', WEIGHTS, name='student')[0]}")


if __name__ == "__main__":
    main()
