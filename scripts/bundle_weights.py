"""Copy trained checkpoints into edge_sync/weights/ (float16, a few MB), export the bundled student's ONNX
artifacts when the student changes (FP32, so `edge-sync sync` runs without PyTorch; INT8 from a calibration set,
the artifact the real-footage targets are scored on), and write NAME.json with recipe(s), hash and hold-out metrics.

Run by `bash scripts/train_bundled.sh bundle`.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from edge_sync.exporters.api import export
from edge_sync.models.io import bundled_path, load, parameter_count, save_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "edge_sync" / "weights"


def stage_record(checkpoint: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {"checkpoint": Path(checkpoint).name, "recipe": meta.get("recipe"), "steps": meta.get("steps"),
            "train_seconds": meta.get("train_seconds"), "device": meta.get("device")}


def stage_records(checkpoints: list[str], bundled: Path) -> list[dict[str, Any]]:
    """The recipes of the checkpoints a model was fine-tuned from, first one first. The bundled checkpoint itself
    stands for every stage its JSON recorded (a checkpoint keeps only its last recipe), so a model fine-tuned from
    the bundled one keeps the whole chain."""
    records: list[dict[str, Any]] = []
    for ckpt in checkpoints:
        recorded = bundled.with_suffix(".json")
        stages = None
        if Path(ckpt).resolve() == bundled.resolve() and recorded.is_file():
            stages = json.loads(recorded.read_text()).get("stages")
        records += stages or [stage_record(ckpt, load(ckpt).checkpoint_meta)]
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher checkpoint to bundle (omit to keep the bundled one)")
    parser.add_argument("--student", help="student checkpoint to bundle (omit to keep the bundled one)")
    parser.add_argument("--teacher-real", help="real-footage teacher checkpoint to bundle as 'teacher-real'")
    parser.add_argument("--eval", help="JSON written by edge-sync eval on the hold-out set (-o); needed with a "
                                       "checkpoint")
    parser.add_argument("--real-eval", help="JSON written by edge-sync eval --data DIR on the real hold-out (-o): "
                                            "each bundled model's row is recorded as real_holdout")
    parser.add_argument("--teacher-stages", nargs="*", default=[],
                        help="the checkpoints the teacher was fine-tuned from, first one first: their recipes are "
                             "recorded in teacher.json as 'stages' (a fine-tuned checkpoint records only its last)")
    parser.add_argument("--int8-calib", help="calibration set (edge-sync calibrate -o DIR) for the bundled INT8 "
                                             "artifact; needed when the student changes, and alone re-exports it")
    parser.add_argument("--student-stages", nargs="*", default=[],
                        help="the same for the student: the checkpoints it was fine-tuned from, first one first")
    args = parser.parse_args()
    if args.student and not args.int8_calib:
        parser.error("a new student needs --int8-calib DIR: the bundled INT8 artifact must come from the same student")
    if (args.teacher or args.student or args.teacher_real) and not args.eval:
        parser.error("bundling a checkpoint needs --eval (its hold-out metrics go into NAME.json)")
    evaluation = json.loads(Path(args.eval).read_text()) if args.eval else {}
    real = json.loads(Path(args.real_eval).read_text()) if args.real_eval else None
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for name, src in (("teacher", args.teacher), ("student", args.student), ("teacher-real", args.teacher_real)):
        if src is None:
            continue
        model = load(src)
        dst = bundled_path(name)
        earlier = stage_records({"teacher": args.teacher_stages, "student": args.student_stages}.get(name) or [], dst)
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
        if earlier:
            info["stages"] = [*earlier, stage_record(src, meta)]
            info["train_seconds_total"] = round(sum(st["train_seconds"] or 0 for st in info["stages"]), 1)
        dst.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"bundled {dst} ({dst.stat().st_size / 1e6:.2f} MB)")
    if args.student:  # the runtime's default artifact is the student's: re-export only when it changed
        shutil.rmtree(WEIGHTS / "student.onnx-fp32", ignore_errors=True)
        print(f"exported {export(WEIGHTS / 'student.pt', 'onnx', 'fp32', WEIGHTS, name='student')[0]}")
    if args.int8_calib:  # first convs float (the default stems), as every INT8 figure of the docs
        shutil.rmtree(WEIGHTS / "student.onnx-int8", ignore_errors=True)
        written = export(WEIGHTS / "student.pt", "onnx", "int8", WEIGHTS, name="student", calib=args.int8_calib)
        print(f"exported {written[0]}")


if __name__ == "__main__":
    main()
