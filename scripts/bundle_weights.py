"""Copy trained checkpoints into edge_sync/weights/ (float16, a few MB), export the bundled student's ONNX
artifact when the student changes (so `edge-sync sync` runs without PyTorch), and write NAME.json with recipe(s),
hash and hold-out metrics.

Run by `bash scripts/train_bundled.sh bundle`.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from edge_sync.exporters.api import export
from edge_sync.models.io import bundled_path, load, parameter_count, save_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "edge_sync" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher checkpoint to bundle (omit to keep the bundled one)")
    parser.add_argument("--student", help="student checkpoint to bundle (omit to keep the bundled one)")
    parser.add_argument("--teacher-real", help="real-footage teacher checkpoint to bundle as 'teacher-real'")
    parser.add_argument("--eval", required=True, help="JSON written by edge-sync eval on the hold-out set (-o)")
    parser.add_argument("--real-eval", help="JSON written by edge-sync eval --data DIR on the real hold-out (-o): "
                                            "each bundled model's row is recorded as real_holdout")
    parser.add_argument("--teacher-stages", nargs="*", default=[],
                        help="the checkpoints the teacher was fine-tuned from, first one first: their recipes are "
                             "recorded in teacher.json as 'stages' (a fine-tuned checkpoint records only its last)")
    parser.add_argument("--student-stages", nargs="*", default=[],
                        help="the same for the student: the checkpoints it was fine-tuned from, first one first")
    args = parser.parse_args()
    evaluation = json.loads(Path(args.eval).read_text())
    real = json.loads(Path(args.real_eval).read_text()) if args.real_eval else None
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for name, src in (("teacher", args.teacher), ("student", args.student), ("teacher-real", args.teacher_real)):
        if src is None:
            continue
        model = load(src)
        dst = bundled_path(name)
        digest = save_checkpoint(model, dst, meta={**model.checkpoint_meta, "bundled_from": Path(src).name}, half=True)
        meta = model.checkpoint_meta
        info = {"kind": model.kind, "sha256": digest, "params": parameter_count(model), "bytes": dst.stat().st_size,
                "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"), "device": meta.get("device"),
                "recipe": meta.get("recipe"),
                "holdout": {k: evaluation[k] for k in ("data", "seed", "count", "frames")}
                | {"metrics": evaluation["models"].get(src)}}
        if real is not None:
            rows = [m for m in real["models"] if str(m["model"]).startswith(src)]
            info["real_holdout"] = {"data": real["data"], "planted": real["planted"], "detector": real["detector"],
                                    "overall": rows[0]["overall"] if rows else None}
        earlier = {"teacher": args.teacher_stages, "student": args.student_stages}.get(name)
        if earlier:
            stages = [load(stage).checkpoint_meta for stage in earlier] + [meta]
            info["stages"] = [{"checkpoint": Path(ckpt).name, "recipe": m.get("recipe"), "steps": m.get("steps"),
                               "train_seconds": m.get("train_seconds"), "device": m.get("device")}
                              for ckpt, m in zip([*earlier, src], stages)]
            info["train_seconds_total"] = round(sum(st["train_seconds"] or 0 for st in info["stages"]), 1)
        dst.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"bundled {dst} ({dst.stat().st_size / 1e6:.2f} MB)")
    if args.student:  # the runtime's default artifact is the student's: re-export only when it changed
        artifact = WEIGHTS / "student.onnx-fp32"
        shutil.rmtree(artifact, ignore_errors=True)
        print(f"exported {export(WEIGHTS / 'student.pt', 'onnx', 'fp32', WEIGHTS, name='student')[0]}")


if __name__ == "__main__":
    main()
