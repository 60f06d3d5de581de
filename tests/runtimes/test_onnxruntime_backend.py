"""The onnxruntime backend's session settings that the runtime's speed depends on."""
from __future__ import annotations

import pytest

import edge_sync


@pytest.fixture()
def ort():
    return pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")


def test_intra_op_threads_sleep_instead_of_spinning(ort):
    """Spinning worker threads took the cores that decoding and face tracking run on (docs/runtime_cpu.md)."""
    options = edge_sync.load()._session.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.enable_cpu_mem_arena is False
