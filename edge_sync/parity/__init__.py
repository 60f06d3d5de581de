"""Prove artifacts against their PyTorch models: numeric parity per precision, and parity on the task."""
from edge_sync.parity.harness import ArtifactParity, Check, run_parity
from edge_sync.parity.report import parity_markdown, write_reports
from edge_sync.parity.tolerances import TOLERANCES, Tolerance

__all__ = ["TOLERANCES", "ArtifactParity", "Check", "Tolerance", "parity_markdown", "run_parity", "write_reports"]
