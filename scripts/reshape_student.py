"""Carry a student checkpoint over to another temporal kernel and/or motion stages (edge_sync.training.reshape).

.venv/bin/python scripts/reshape_student.py edge_sync/weights/student.pt runs/student_k3m.pt --temporal-kernel 3 \
    --motion-stages 1 2
"""
from __future__ import annotations

import argparse

import torch

from edge_sync.models import io
from edge_sync.training.reshape import reshape_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--temporal-kernel", type=int)
    parser.add_argument("--motion-stages", type=int, nargs="*")
    args = parser.parse_args()
    model = io.load(args.source)
    stages = tuple(args.motion_stages) if args.motion_stages is not None else None
    reshaped = reshape_student(model, args.temporal_kernel, stages)
    digest = io.save_checkpoint(reshaped, args.output, meta={
        "torch": str(torch.__version__), "reshaped_from": args.source,
        "from_sha256": getattr(model, "checkpoint_sha256", None)})
    print(f"{args.output}: {io.parameter_count(reshaped):,} parameters (from {io.parameter_count(model):,}), "
          f"sha256 {digest[:12]}")


if __name__ == "__main__":
    main()
