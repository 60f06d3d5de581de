"""Parity results as the Markdown table users read and the JSON tools read."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_sync.parity.harness import ArtifactParity
from edge_sync.parity.tolerances import TOLERANCES, tolerance_table_markdown


def _worst(res: ArtifactParity, key: str) -> float | None:
    values = [v[key] for v in res.numeric.values() if key in v]
    if not values:
        return None
    return min(values) if key.endswith("cosine") else max(values)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def parity_markdown(results: list[ArtifactParity]) -> str:
    """One row per artifact: numeric worst cases, agreement, task accuracy, status and what failed."""
    rows = ["| artifact | backend | max abs sync_probs | max abs correlation | cosine sync_probs | frame agree "
            "| clip agree | accuracy (ref) | vs teacher | status |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        checks = {c.name: c.value for c in r.checks}
        task = r.task
        acc = f"{task['accuracy']:.1f}% ({task['reference_accuracy']:.1f}%)" if task else "-"
        vs_teacher = f"{task['delta_to_teacher']:+.1f} pt" if "delta_to_teacher" in task else "-"
        status = (r.status if r.passed else f"{r.status}: {r.skipped}" if r.skipped
                  else f"**{r.status}**: " + "; ".join(r.failures()))
        rows.append(f"| {Path(r.artifact).name} | {r.backend} | {_fmt(_worst(r, 'sync_probs_max_abs'), '.1e')} "
                    f"| {_fmt(_worst(r, 'correlation_max_abs'), '.1e')} "
                    f"| {_fmt(_worst(r, 'sync_probs_cosine'), '.6f')} "
                    f"| {_fmt(checks.get('frame offset agreement'), '.2%')} "
                    f"| {_fmt(checks.get('clip offset agreement'), '.1%')} | {acc} | {vs_teacher} | {status} |")
    return "\n".join(rows)


def write_reports(results: list[ArtifactParity], json_out: Path | None = None, md_out: Path | None = None,
                  settings: dict[str, Any] | None = None) -> None:
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"settings": settings or {},
                                        "tolerances": {k: t.to_dict() for k, t in TOLERANCES.items()},
                                        "results": [r.to_dict() for r in results]}, indent=2, default=float))
    if md_out:
        md_out.parent.mkdir(parents=True, exist_ok=True)
        md_out.write_text("# Parity\n\n" + parity_markdown(results) + "\n\nTolerances:\n\n" + tolerance_table_markdown()
                          + "\n")
