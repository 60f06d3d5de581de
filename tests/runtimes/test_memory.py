"""Low-memory mode: glibc's mmap threshold is pinned once per process, and a user's own setting wins."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import sys; sys.modules['torch'] = None; "
         "from edge_sync.runtimes.memory import bound_heap_growth; "
         "print(bound_heap_growth(), bound_heap_growth())")


def _probe(**env: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env})
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="mallopt is glibc's")
def test_applies_once_on_glibc() -> None:
    assert _probe() == "True True"


def test_a_users_malloc_variable_wins() -> None:
    assert _probe(MALLOC_MMAP_THRESHOLD_="1048576") == "False False"


def test_load_can_leave_the_allocator_alone() -> None:
    code = ("import sys; sys.modules['torch'] = None; import edge_sync; from edge_sync.runtimes import memory; "
            "edge_sync.load(low_memory=False); print(memory._applied)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
