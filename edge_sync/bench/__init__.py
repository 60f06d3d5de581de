"""Latency matrix: every artifact x clip length x batch, with the PyTorch teacher and the original SyncNet S
timed in the same run as baselines."""
from edge_sync.bench.matrix import run_bench
from edge_sync.bench.measure import BenchRow

__all__ = ["BenchRow", "run_bench"]
