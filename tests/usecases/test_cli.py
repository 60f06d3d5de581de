"""`edge-sync speakers | score | desync | fix` as a user runs them: JSON out, one-line errors, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sync.cli", *args], capture_output=True, text=True)


def test_score_desync_and_speakers_print_json(desync_clips, speakers_clip) -> None:
    genuine, shifted = str(desync_clips["genuine"].path), str(desync_clips["shifted"].path)
    out = _cli("score", genuine, shifted, "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["in_sync"] for r in rows] == [True, False]
    assert rows[1]["offset_frames"] == pytest.approx(desync_clips["shifted"].offset_frames, abs=1)
    out = _cli("desync", genuine, shifted, "--json")
    assert [json.loads(line)["flagged"] for line in out.stdout.splitlines()] == [False, True]
    out = _cli("speakers", str(speakers_clip.path), "--json")
    found = json.loads(out.stdout)
    assert len({t["track_id"] for t in found["tracks"]}) >= 2 and found["turns"]


def test_score_says_unsure_under_the_evidence_floor(tmp_path, desync_clips, strict_heads) -> None:
    """The same clip, judged by the bundled heads and by a copy whose evidence floor sits above its LSE-C."""
    genuine = str(desync_clips["genuine"].path)
    path = strict_heads.write(tmp_path / "strict.json")
    assert "-> in sync" in _cli("score", genuine).stdout
    out = _cli("score", genuine, "--heads", str(path))
    assert out.returncode == 0, out.stderr
    assert "-> UNSURE, too little sync evidence" in out.stdout


def test_sync_says_unsure_under_the_evidence_floor(desync_clips, request) -> None:
    from typer.testing import CliRunner

    from edge_sync.cli import app

    genuine = str(desync_clips["genuine"].path)
    assert "UNSURE" not in CliRunner().invoke(app, ["sync", genuine]).output
    request.getfixturevalue("strict_heads_installed")  # from here on, the bundled student's heads are the strict ones
    out = CliRunner().invoke(app, ["sync", genuine])
    assert out.exit_code == 0, out.output
    assert "UNSURE: confidence" in out.output and "evidence floor 2.000" in out.output
    found = json.loads(CliRunner().invoke(app, ["sync", genuine, "--json"]).stdout)  # machines are told too
    assert found["low_evidence"] is True and any(w.startswith("UNSURE") for w in found["warnings"])


def test_fix_then_score_measures_zero(tmp_path, desync_clips) -> None:
    fixed = tmp_path / "fixed.mp4"
    out = _cli("fix", str(desync_clips["shifted"].path), "-o", str(fixed), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["offset_frames"] == pytest.approx(desync_clips["shifted"].offset_frames, abs=1)
    again = json.loads(_cli("score", str(fixed), "--json").stdout)
    assert abs(again["offset_frames"]) <= 1 and again["in_sync"]


@pytest.mark.parametrize("command", ["score", "desync", "speakers"])
def test_a_missing_video_is_one_line_on_stderr(tmp_path, command) -> None:
    out = _cli(command, str(tmp_path / "nope.mp4"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "nope.mp4" in out.stderr


@pytest.mark.parametrize("command", ["score", "desync"])
def test_a_bad_file_in_a_batch_is_reported_and_the_rest_still_run(tmp_path, desync_clips, command) -> None:
    genuine, shifted = str(desync_clips["genuine"].path), str(desync_clips["shifted"].path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    out = _cli(command, genuine, str(broken), shifted, "--json")
    assert out.returncode == 1
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r.get("error_type") for r in rows] == [None, "MediaError", None] and "broken.mp4" in rows[1]["path"]
    out = _cli(command, str(broken), genuine)
    assert out.returncode == 1 and out.stdout.count("\n") == 1 and genuine in out.stdout
    assert "broken.mp4: error:" in out.stderr and "1 of 2 files failed" in out.stderr


def test_score_a_folder_as_a_resumable_corpus(tmp_path, desync_clips) -> None:
    folder = desync_clips["genuine"].path.parent  # the five desync clips
    out = tmp_path / "scores.jsonl"
    first = _cli("score", str(folder), "-o", str(out), "--workers", "0", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["scored"] == len(desync_clips)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["genuine.mp4"]["in_sync"] and not by_name["shifted.mp4"]["in_sync"]
    again = json.loads(_cli("score", str(folder), "-o", str(out), "--workers", "0", "--json").stdout)
    assert again["scored"] == 0 and again["skipped"] == len(desync_clips)  # resumed: nothing left to do


def test_a_corpus_with_a_failed_clip_exits_1_and_a_resume_does_not_fail_it_again(tmp_path, desync_clips) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "genuine.mp4").symlink_to(desync_clips["genuine"].path)
    (folder / "broken.mp4").write_bytes(b"\x00" * 4096)
    out = tmp_path / "scores.jsonl"
    first = _cli("score", str(folder), "-o", str(out), "--workers", "0", "--json")
    assert first.returncode == 1, first.stderr  # the journal has the error, and scripts see it
    summary = json.loads(first.stdout)
    assert summary["scored"] == 1 and summary["failed"] == 1
    again = _cli("score", str(folder), "-o", str(out), "--workers", "0", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["failed"] == 0  # an error line is final on resume
