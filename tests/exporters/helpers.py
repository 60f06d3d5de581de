"""Shared test helpers for exporters."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest


@contextmanager
def onnx_exported_once(module: Any, cache: Path) -> Iterator[None]:
    """Make ``module.export_onnx_file`` (the slow dynamo export) run once and copy its result afterwards: targets
    that convert the same ONNX then share one export per test session."""
    real = module.export_onnx_file

    def export_once(model, path, *args, **kwargs):
        if not cache.is_file():
            real(model, cache, *args, **kwargs)
        shutil.copyfile(cache, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "export_onnx_file", export_once)
        yield
