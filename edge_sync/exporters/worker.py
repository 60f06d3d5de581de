"""The child process that exports one target: ``python -m edge_sync.exporters.worker JOB.json RESULT.json``.

Why a process per target: each toolchain (torch.onnx, OpenVINO + NNCF, coremltools, litert-torch + TensorFlow,
onnxruntime's calibrators) keeps hundreds of MB after it returns, and exporting every target in one process
summed them (6.1 GB for ``--target all --precision int8``); a child gives all of it back when it exits. The parent
routes the child's stdout and stderr (a log file unless ``-v``), so no foreign log line reaches the user's terminal,
and the child reports back in RESULT.json: the artifact, or the error in one line, plus edge-sync's own warnings.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from pathlib import Path

from edge_sync.exporters.job import ExportJob, JobResult


class _KeepWarnings(logging.Handler):
    """Keeps edge-sync's own warnings for the parent, which shows each distinct one once for all targets."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def peak_rss_mb() -> float:
    """This process's peak resident memory (0 where the platform has no getrusage)."""
    try:
        import resource
    except ImportError:
        return 0.0
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_job(job: ExportJob) -> JobResult:
    """Export ``job`` in this process; any failure becomes a one-line error (its traceback goes to the log)."""
    from edge_sync.exporters.api import export
    from edge_sync.exporters.onnx import shared_exports

    kept = _KeepWarnings()
    logging.getLogger("edge_sync").addHandler(kept)
    start = time.perf_counter()
    try:
        with shared_exports(Path(job.share_dir)) if job.share_dir else contextlib.nullcontext():
            path = export(job.model, job.target, job.precision, job.out_dir, name=job.name, **job.options)[0]
        return JobResult(path=str(path), seconds=time.perf_counter() - start, peak_rss_mb=peak_rss_mb(),
                         warnings=kept.messages)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, traceback kept in the log
        traceback.print_exc()
        return JobResult(error=str(exc) or type(exc).__name__, seconds=time.perf_counter() - start,
                         peak_rss_mb=peak_rss_mb(), warnings=kept.messages)


def main(argv: list[str]) -> int:
    job = ExportJob.from_json(Path(argv[0]).read_text())
    logging.basicConfig(level=logging.INFO if job.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    result = run_job(job)
    result.write(Path(argv[1]))
    return 0 if result.error is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
