"""Which export options each target takes, and the refusal of one that would be silently ignored.

Each exporter declares, in its registry entry (``ExporterInfo.takes``), the options it reads and for which
precisions. An option the user gave that none of the targets being exported reads is refused before anything
runs: a user who passes ``--calib-method entropy`` to a tflite export (ai-edge-quantizer has its own calibration)
or ``--calib`` to an fp32 one must learn it does nothing, not find out later from the manifest. With
``--target all`` an option is refused only when no target takes it; the ones that do apply it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from edge_sync.errors import EdgeSyncError

ALL_PRECISIONS = ("fp32", "fp16", "int8")
INT8 = ("int8",)
# the API option -> the command-line flag(s) that set it (messages name what the user typed)
FLAGS = {"calib": "--calib", "calib_method": "--calib-method", "int8_stems": "--int8-stems",
         "time_range": "--min-frames/--opt-frames/--max-frames", "buckets": "--buckets"}


class InapplicableOptionError(EdgeSyncError, ValueError):
    """An option that no target being exported would use: ``flag`` as the user typed it, ``reason`` the rest."""

    def __init__(self, option: str, flag: str, reason: str) -> None:
        super().__init__(f"{flag} {reason}")
        self.option, self.flag, self.reason = option, flag, reason


def takers(option: str, precision: str, targets: Iterable[str], takes: Mapping[str, Mapping[str, tuple[str, ...]]]
           ) -> list[str]:
    """The targets among ``targets`` that read ``option`` at ``precision`` (``takes``: target -> its table)."""
    return [t for t in targets if precision in takes[t].get(option, ())]


def where_it_applies(option: str, takes: Mapping[str, Mapping[str, tuple[str, ...]]]) -> str:
    """'onnx, tensorrt (int8)': every target and precision that reads ``option``, for the refusal message."""
    parts = []
    for target, table in takes.items():
        precisions = table.get(option, ())
        if precisions:
            parts.append(target if tuple(precisions) == ALL_PRECISIONS else f"{target} ({', '.join(precisions)})")
    return ", ".join(parts) or "no target on this platform"


def refuse_inapplicable(given: Iterable[str], targets: list[str], precision: str,
                        takes: Mapping[str, Mapping[str, tuple[str, ...]]], flag: Mapping[str, str] = FLAGS) -> None:
    """Raise :class:`InapplicableOptionError` for the first option in ``given`` that no target in ``targets``
    reads at ``precision``; ``flag`` names each option as the user typed it."""
    for option in given:
        if takers(option, precision, targets, takes):
            continue
        asked = targets[0] if len(targets) == 1 else f"any of {', '.join(targets)}"
        raise InapplicableOptionError(option, flag.get(option, option), f"does not apply to {asked} at {precision}; "
                                      f"it applies to: {where_it_applies(option, takes)}")
