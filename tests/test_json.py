"""``to_json()`` on the results users get is the JSON the CLI's ``--json`` prints: one serialisation, not two."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_sync._json import JsonResult
from edge_sync.runtimes import api
from edge_sync.runtimes.api import FileSync, TrackSync
from edge_sync.runtimes.result import SyncResult
from edge_sync.usecases.corpus import CorpusSummary
from edge_sync.usecases.desync import DesyncFlag
from edge_sync.usecases.fix import FixResult
from edge_sync.usecases.quality import QualityScore
from edge_sync.usecases.speakers import Speakers
from tests.runtimes.test_python_api import _result

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def file_sync() -> FileSync:
    return FileSync("talk.mp4", 130, [TrackSync(1, 0, _result(-2, 30)), TrackSync(4, 30, _result(3, 100))],
                    seconds=1.5)


def test_file_result_to_json_is_what_sync_json_prints(file_sync, monkeypatch, capsys):
    from edge_sync.cli import main

    engine = SimpleNamespace(sync_file=lambda video, detector, null_check: file_sync, backend="onnxruntime")
    monkeypatch.setattr(api, "load", lambda artifact, backend: engine)
    main(["sync", "talk.mp4", "--json"])
    printed = capsys.readouterr().out
    assert printed == file_sync.to_json() + "\n"
    data = json.loads(printed)
    assert data["offset_frames"] == file_sync.offset_frames == 3 and len(data["frames"]) == 100
    assert data["frames"][0]["frame"] == 30  # per-frame results in the file's frame numbers


def test_to_json_options_and_indent():
    res = _result(2, 40)
    assert json.loads(res.to_json()) == res.to_dict()
    assert "frames" not in json.loads(res.to_json(per_frame=False))
    assert res.to_json(indent=2).startswith('{\n  "offset_frames": 2')


@pytest.mark.parametrize("cls", [SyncResult, FileSync, QualityScore, DesyncFlag, Speakers, FixResult, CorpusSummary])
def test_every_result_the_cli_prints_has_to_json(cls):
    assert issubclass(cls, JsonResult) and "to_dict" in vars(cls)


def test_the_cli_serialises_results_only_through_to_json():
    """No second serialisation in the CLI: results are printed with ``to_json()``, never ``json.dumps(x.to_dict())``."""
    for name in ("cli.py", "cli_usecases.py"):
        source = (ROOT / "edge_sync" / name).read_text()
        assert ".to_dict(" not in source.replace("to_dict(per_frame=False)", ""), name
