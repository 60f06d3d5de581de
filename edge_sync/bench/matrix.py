"""Drive the matrix: baselines, each artifact in its own process, a quick parity status per artifact."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from edge_sync.artifact import parse_artifact_dirname
from edge_sync.bench.measure import BenchRow, measure_artifact, measure_baselines
from edge_sync.errors import MissingExtraError
from edge_sync.runtimes.platforms import artifact_skip_reason

log = logging.getLogger(__name__)
QUICK = {"lengths": [25, 100], "batches": [1], "repeat": 3, "warmup": 1}


def parity_status(path: str | Path, backend: str) -> tuple[bool, str, float | None]:
    """Numeric parity on random inputs at one length (fast): (passed, failures, accuracy if measured)."""
    from edge_sync.parity import run_parity

    (res,) = run_parity([path], data="none", count=0, lengths=(25,), backend=backend, teacher=None, progress=False)
    return res.passed, "; ".join(res.failures()), res.task.get("accuracy")


def run_bench(artifacts: list[str | Path], lengths: list[int], batches: list[int], threads: int | None = None,
              repeat: int = 10, warmup: int = 2, backend: str = "auto", baselines: bool = True,
              check_parity: bool = True, progress: bool = True, torch_device: str = "cpu",
              torch_half: bool = False) -> list[BenchRow]:
    from tqdm import tqdm

    # a device install (no torch) times artifacts; the baselines and the parity check need the PyTorch models
    has_torch = importlib.util.find_spec("torch") is not None
    if baselines and not has_torch:
        raise MissingExtraError("torch", "export", "the PyTorch baselines", "install it with: pip install "
                                "'edge-sync[export]', or time the artifacts alone with --no-baselines")
    rows: list[BenchRow] = []
    jobs = (["baselines"] if baselines else []) + [str(a) for a in artifacts]
    for job in tqdm(jobs, desc="bench", unit="model", disable=not progress):
        if job == "baselines":
            rows += measure_baselines(lengths, batches, threads, warmup, repeat, torch_device, torch_half)
            continue
        reason = artifact_skip_reason(job, backend)
        if reason:  # no backend runs it on this OS (CoreML off macOS): skipped, as parity reports it
            target, precision = parse_artifact_dirname(Path(job).name)
            rows += [BenchRow(Path(job).name, target, precision, backend, t, b, status="skipped", detail=reason)
                     for t in lengths for b in batches]
            continue
        measured = measure_artifact(job, lengths, batches, threads, warmup, repeat, backend)
        if check_parity and not has_torch:
            for r in measured:
                r.detail = r.detail or "parity not checked: no torch"
        elif check_parity and any(r.status == "ok" for r in measured):
            passed, failures, _ = parity_status(job, backend)
            if not passed:
                for r in measured:
                    if r.status == "ok":
                        r.status, r.detail = "parity failed", failures[:200]
        rows += measured
    return rows
