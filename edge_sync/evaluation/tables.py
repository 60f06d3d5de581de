"""Markdown tables of the real-footage protocol: models side by side, per source, per clip."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from edge_sync.evaluation.real_footage import TOLERANCE, RealFootageReport
from edge_sync.training.metrics import metrics_table_markdown


def _row(s: Mapping[str, Any]) -> dict[str, Any]:
    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({100.0 * a / b:.0f}%)" if b else "—"

    return {
        "clips": s["clips"],
        f"originals 0+-{TOLERANCE}": pct(s["originals_right"], s["originals"]),
        f"planted +-{TOLERANCE}": pct(s["planted_right"], s["planted"]),
        f"shift tracked +-{TOLERANCE}": pct(s.get("tracked_right", 0), s.get("tracked", 0)),
        "exact": pct(s["exact"], s["cases"]),
        "accuracy@+-1 5 fr": s.get("context5", float("nan")), "accuracy 5 fr": s.get("context5_exact", float("nan")),
        "accuracy@+-1 15 fr": s.get("context15", float("nan")),
        "accuracy 15 fr": s.get("context15_exact", float("nan")),
        "conf. right": s["confidence_right"], "conf. wrong": s["confidence_wrong"],
        "unsure right": pct(s.get("unsure_right", 0), s.get("right", 0)),
        "unsure wrong": pct(s.get("unsure_wrong", 0), s.get("wrong", 0)),
    }


def overall_table(reports: Sequence[RealFootageReport], group: str = "real") -> str:
    return metrics_table_markdown({r.model: _row(r.overall(group)) for r in reports}, digits=3)


def source_table(report: RealFootageReport, group: str = "real") -> str:
    return metrics_table_markdown({s: _row(v) for s, v in report.by_source(group).items()}, digits=3,
                                  name_header="source")


def clip_table(reports: Sequence[RealFootageReport]) -> str:
    """One row per clip: group, frames scored, then per model what the original read and planted shifts right."""
    clips: dict[str, dict[str, Any]] = {}
    for r in reports:
        for c in r.cases:
            row = clips.setdefault(c.clip, {"group": c.group, "frames": "", "coverage": r.coverage.get(c.clip)})
            if c.planted == 0:
                row["frames"] = c.frames
                row[f"{r.model}: original"] = f"{c.detected:+d} ({c.confidence:.2f})"
            n, k = row.get(f"_{r.model}", (0, 0))
            if c.planted != 0:
                row[f"_{r.model}"] = (n + 1, k + int(c.right))
    for row in clips.values():
        for r in reports:
            n, k = row.pop(f"_{r.model}", (0, 0))
            row[f"{r.model}: planted"] = f"{k}/{n}"
    return metrics_table_markdown(dict(sorted(clips.items())), name_header="clip")


def render(reports: Sequence[RealFootageReport], planted: Sequence[int]) -> str:
    shifts = ", ".join(f"{k:+d}" for k in planted)
    out = [f"Real-footage protocol: each in-sync `real` clip as published (must read 0 +-{TOLERANCE}) and with its "
           f"sound shifted by {shifts} frames (each must read its shift +-{TOLERANCE}); accuracy over the clip's "
           "per-frame evidence averaged in windows of 5 and 15 frames (windows >= 15 frames from the ends); "
           f"shift tracked: the planted copy's reading minus the original's reading is the shift +-{TOLERANCE} (no "
           "assumption that the clip is in sync as published); "
           "median confidence (syncnet_python's) of right and wrong answers; unsure: answers whose confidence is not "
           "1.5x the clip's own null (its sound rolled out of any alignment; edge_sync.runtimes.evidence), which "
           "`sync` and `score` report as UNSURE.\n", overall_table(reports)]
    for r in reports:
        out += [f"\nBy source, {r.model}:\n", source_table(r)]
    others = sorted({c.group for r in reports for c in r.cases} - {"real"})
    for g in others:
        out += [f"\nGroup `{g}` (not ground truth):\n", overall_table(reports, g)]
    off = [(r.model, clip, d) for r in reports for clip, d in r.read_off().items()]
    if off:
        out += ["\nClips read consistently off as published (the original away from 0, every planted shift but at "
                "most one found relative to it: the sound may be that late as published, or the model biased there; "
                "the absolute columns count every case of such a clip wrong):\n"]
        out += [f"- {clip}: {d:+d} frames ({model})" for model, clip, d in off]
    out += ["\nPer clip (original: detected offset (confidence); planted: shifts recovered +-1):\n",
            clip_table(reports)]
    skipped = {k: v for r in reports for k, v in r.skipped.items()}
    if skipped:
        out += ["\nNot scored:\n"] + [f"- {k}: {v}" for k, v in sorted(skipped.items())]
    return "\n".join(out) + "\n"
