"""Write edge_sync/weights/NAME.json beside each bundled checkpoint: recipe, hash, size and hold-out metrics.

`edge-sync info` shows these; the numbers come from the eval JSON given on the command line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from edge_sync.models.io import parameter_count, read_checkpoint, load

WEIGHTS = Path(__file__).resolve().parent.parent / "edge_sync" / "weights"


def main(eval_json: str) -> None:
    evaluation = json.loads(Path(eval_json).read_text())
    by_source = {Path(k).name: v for k, v in evaluation["models"].items()}
    for ckpt in sorted(WEIGHTS.glob("*.pt")):
        payload = read_checkpoint(ckpt)
        meta = payload["meta"]
        source = Path(meta.get("recipe", {}).get("model", ""))
        metrics = next((v for k, v in by_source.items() if k.startswith(ckpt.stem) or ckpt.stem in k), None)
        info = {"kind": payload["kind"], "sha256": payload["state_sha256"], "params": parameter_count(load(ckpt)),
                "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"), "device": meta.get("device"),
                "recipe": meta.get("recipe"), "holdout": {"data": evaluation["data"], "seed": evaluation["seed"],
                                                          "count": evaluation["count"], "frames": evaluation["frames"],
                                                          "metrics": metrics}, "source": str(source)}
        ckpt.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"described {ckpt.name}")


if __name__ == "__main__":
    main(sys.argv[1])
