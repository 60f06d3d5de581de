"""The real-footage protocol: planted shifts move the sound exactly, and the bundled models find them end to end."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from edge_sync.evaluation.real_footage import (MIN_SCORED_FRAMES, RealClip, RealFootageReport, find_clips,
                                               load_clips, read_manifest)
from edge_sync.runtimes.evidence import embedding_nulls, evidence_ratio, null_rolls
from edge_sync.spec import MOUTH, SAMPLES_PER_FRAME

REAL_CLIPS = Path(os.environ.get("EDGE_SYNC_REAL_CLIPS", Path(__file__).resolve().parents[3] / "shared" / "real_clips"))


def _clip_with_click(frames: int = 60, click_frame: int = 30) -> RealClip:
    audio = np.zeros(frames * SAMPLES_PER_FRAME + 2000, np.float32)
    audio[click_frame * SAMPLES_PER_FRAME:(click_frame + 1) * SAMPLES_PER_FRAME] = 0.5
    crops = np.zeros((frames, 112, 112, 3), np.uint8)
    crops[:, 0, 0, 0] = np.arange(frames)  # each crop knows its source frame
    return RealClip(Path("x.mp4"), "real", "test", 0, crops, audio, frames)


@pytest.mark.parametrize("planted", [0, 5, -5, 12, -12])
def test_planted_shift_makes_the_sound_late_by_exactly_k_frames(planted):
    clip = _clip_with_click()
    audio, video = clip.case_inputs(planted, MOUTH)
    frames = video.shape[2]
    assert frames == clip.frames - abs(planted)  # trimmed to real audio, never padded
    energy = audio[0, 0, 0].reshape(frames, 4).mean(axis=1)  # MFCC row 0: log energy per video frame
    heard = int(np.argmax(energy))
    source = np.rint((video[0, 0, :, 0, 0] * 127.5 + 127.5)).astype(int)  # source frame of each video frame
    # the click happened at source frame 30; with the sound k frames late it is heard k frames after it is seen
    assert heard == int(np.flatnonzero(source == 30)[0]) + planted


@pytest.mark.parametrize("planted,roll", [(0, 40), (5, 40), (-5, 70), (12, 95)])
def test_the_null_rolls_the_whole_soundtrack_round_its_end(planted, roll):
    clip = _clip_with_click(frames=100, click_frame=30)  # the soundtrack: 100 frames + 2000 samples
    audio = clip.case_audio(planted, roll)
    frames = clip.frames - abs(planted)
    energy = audio[0, 0, 0].reshape(frames, 4).mean(axis=1)
    first = max(planted, 0)  # video frame first + t hears source frame first + t - planted + roll, modulo the track
    heard_source = (first + np.arange(frames) - planted + roll) * SAMPLES_PER_FRAME % len(clip.audio)
    assert abs(int(np.argmax(energy)) - int(np.argmin(np.abs(heard_source - 30 * SAMPLES_PER_FRAME)))) <= 1


def test_too_short_cases_are_left_out():
    clip = _clip_with_click(frames=MIN_SCORED_FRAMES + 4)
    assert clip.case_inputs(4, MOUTH) is not None
    assert clip.case_inputs(5, MOUTH) is None


def test_manifest_groups_and_sources(tmp_path):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "MANIFEST.tsv").write_text("file\tgroup\tsource_repo\na.mp4\treal\towner/repo_a\n"
                                           "b.mp4\treal-suspect\towner/repo_b\n")
    assert set(read_manifest(tmp_path)) == {"a.mp4", "b.mp4"}
    found = find_clips(tmp_path)
    assert [(p.name, g, s) for p, g, s in found] == [("a.mp4", "real", "repo_a"), ("b.mp4", "real-suspect", "repo_b")]
    assert [p.name for p, _, _ in find_clips(tmp_path, groups=("real",))] == ["a.mp4"]


def test_summary_counts_originals_and_planted_separately():
    from edge_sync.evaluation.real_footage import CaseResult

    cases = [CaseResult("a", "real", "s", 0, 0, 0.5, 0.9, 100), CaseResult("a", "real", "s", 4, 9, 0.1, 0.2, 96),
             CaseResult("a", "real", "s", -4, -3, 0.4, 0.8, 96)]
    s = RealFootageReport.summary(cases)
    assert (s["originals_right"], s["originals"], s["planted_right"], s["planted"]) == (1, 1, 1, 2)
    assert s["confidence_right"] == pytest.approx(0.45) and s["confidence_wrong"] == pytest.approx(0.1)
    assert (s["unsure_right"], s["right"], s["unsure_wrong"], s["wrong"]) == (0, 2, 0, 1)  # no null measured


def test_the_summary_counts_readings_under_their_null_as_unsure():
    from edge_sync.evaluation.real_footage import CaseResult

    cases = [CaseResult("a", "real", "s", 0, 0, 0.06, 0.9, 100, evidence_ratio=3.0),
             CaseResult("a", "real", "s", 4, 4, 0.02, 0.5, 96, evidence_ratio=1.2),
             CaseResult("a", "real", "s", -4, 9, 0.03, 0.1, 96, evidence_ratio=0.9),
             CaseResult("a", "real", "s", 8, -2, 0.05, 0.1, 92, evidence_ratio=1.7)]
    s = RealFootageReport.summary(cases)
    assert (s["unsure_right"], s["right"], s["unsure_wrong"], s["wrong"]) == (1, 2, 1, 2)


def test_shift_tracking_and_clips_read_consistently_off():
    """A model that reads clip a at +2 and every copy 2 frames late tracked each shift but got every case wrong on
    the absolute protocol; the report names the clip and its reading, and never names a clip read right."""
    from edge_sync.evaluation.real_footage import CaseResult
    from edge_sync.evaluation.tables import render

    shifts = (-8, -4, 4, 8)
    cases = ([CaseResult("a", "real", "s", k, k + 2, 0.1, 0.5, 90) for k in (0, *shifts)]
             + [CaseResult("b", "real", "s", k, k, 0.1, 0.5, 90) for k in (0, *shifts)]
             + [CaseResult("c", "real", "s", k, 5, 0.1, 0.5, 90) for k in (0, *shifts)])  # reads +5 whatever comes
    report = RealFootageReport("m", cases)
    s = report.overall()
    assert (s["planted_right"], s["tracked_right"], s["tracked"]) == (0 + 4 + 1, 4 + 4 + 0, 12)  # c: +5 for +4
    assert report.read_off() == {"a": 2}
    text = render([report], shifts)
    assert "- a: +2 frames (m)" in text and "8/12 (67%)" in text


def test_bundled_student_on_a_talking_photo_finds_every_planted_shift(talking_dir):
    """End to end through decode, YuNet, crops, MFCC and the ONNX runtime."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    import edge_sync
    from edge_sync.evaluation.real_footage import evaluate_real

    clips, skipped = load_clips(talking_dir, MOUTH, progress=False)
    assert not skipped and len(clips) == 1 and clips[0].coverage > 0.95
    report = evaluate_real(edge_sync.load(), clips, "student", planted=(-6, 4), progress=False)
    assert [c.planted for c in report.cases] == [0, -6, 4]
    assert all(c.right for c in report.cases), [(c.planted, c.detected) for c in report.cases]
    # every case is long enough for the evidence null, and this clear a reading stands well above it
    assert all(c.evidence_ratio is not None and not c.unsure for c in report.cases), \
        [c.evidence_ratio for c in report.cases]


def test_the_evals_null_is_the_one_sync_file_measures(talking_dir, streamed_student):
    """The eval's unsure column says what `sync` would with the same artifact: read off the case's own embeddings
    where the artifact outputs them, as sync_file reads its segment's; else streamed against the whole soundtrack
    rolled, as sync_file streams it (a clip longer than its face run then rolls by other amounts)."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    import edge_sync
    from edge_sync.evaluation.real_footage import score_clip

    (clip,), _ = load_clips(talking_dir, MOUTH, progress=False)
    ratios = []
    for engine in (edge_sync.load(), streamed_student):
        (original,) = score_clip(engine, clip, planted=())
        sync = engine.sync_file(talking_dir / "talk.mp4")
        assert sync.main.start_frame == clip.start and sync.main.result.frames == clip.frames
        # equal but for the streams' first MFCC windows (they continue the soundtrack's pre-emphasis)
        assert original.evidence_ratio == pytest.approx(sync.evidence_ratio, rel=0.03)
        ratios.append(original.evidence_ratio)
    # the embedding engine's is the case's own embedding null; a face run too short for rolls of its own streams
    engine = edge_sync.load()
    res, outputs = engine.run_with_outputs(*clip.case_inputs(0, MOUTH))
    k = engine.contract.max_offset
    assert ratios[0] == evidence_ratio(res.confidence, embedding_nulls(outputs["audio_emb"], outputs["video_emb"], k))
    short = dataclasses.replace(clip, crops=clip.crops[:70])
    assert score_clip(engine, short, planted=())[0].evidence_ratio == \
        score_clip(streamed_student, short, planted=())[0].evidence_ratio is not None
    assert clip.null_rolls(k) == null_rolls(len(clip.audio) // SAMPLES_PER_FRAME, k)
    # a face run shorter than the soundtrack keeps the soundtrack's rolls
    short = dataclasses.replace(clip, crops=clip.crops[: clip.frames // 2])
    assert short.null_rolls(k) == clip.null_rolls(k) != null_rolls(short.frames, k)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason=f"no real clips at {REAL_CLIPS} (set EDGE_SYNC_REAL_CLIPS)")
def test_real_clips_are_all_tracked_and_scored():
    import edge_sync
    from edge_sync.evaluation.real_footage import evaluate_real

    clips, skipped = load_clips(REAL_CLIPS, MOUTH, groups=("real",), progress=False)
    assert not skipped
    assert min(c.coverage for c in clips) >= 0.9
    report = evaluate_real(edge_sync.load(), clips, "student", planted=(4,), progress=False)
    assert report.overall()["originals"] == len(clips)


def test_asking_for_clips_that_are_not_there_is_an_error(tmp_path):
    from edge_sync.errors import EdgeSyncError

    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(EdgeSyncError, match="not found.*zz.mp4"):
        load_clips(tmp_path, MOUTH, names=["a.mp4", "zz.mp4"], progress=False)


def test_cli_eval_on_a_folder_runs_the_protocol_on_an_artifact_and_a_checkpoint(talking_dir, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    pytest.importorskip("torch", reason="the checkpoint row needs torch")
    import json

    from typer.testing import CliRunner

    from edge_sync._paths import BUNDLED_ARTIFACT
    from edge_sync.cli import app

    out = CliRunner().invoke(app, ["eval", "--data", str(talking_dir), "--model", str(BUNDLED_ARTIFACT), "--model",
                                   "student", "--model", "student-int8", "--model",
                                   str(BUNDLED_ARTIFACT.with_name("student.onnx-int8")), "--planted", "5",
                                   "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "originals 0+-1" in out.output and "| talk.mp4 |" in out.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["overall"]["originals"] for m in report["models"]] == [1, 1, 1, 1]
    # a bundled artifact asked for by its name is shown by it, and by its path apart from that
    assert [m["model"] for m in report["models"][2:]] == ["student-int8 (onnxruntime)",
                                                          "student.onnx-int8 (onnxruntime)"]
    assert [c["planted"] for c in report["models"][0]["cases"]] == [0, 5]
    # the artifact and its PyTorch checkpoint read the same offsets
    assert [c["detected"] for c in report["models"][0]["cases"]] == [c["detected"] for c in report["models"][1]["cases"]]


def test_cli_eval_keeps_a_row_for_each_of_two_artifacts_of_one_name(talking_dir, tmp_path):
    """INT8 artifacts of one model calibrated two ways share a folder name (student.onnx-int8): each keeps its row,
    labelled by the path as given, instead of one overwriting the other in the table."""
    pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
    import json
    import shutil

    from typer.testing import CliRunner

    from edge_sync._paths import BUNDLED_ARTIFACT
    from edge_sync.cli import app

    copies = [shutil.copytree(BUNDLED_ARTIFACT, tmp_path / run / BUNDLED_ARTIFACT.name) for run in ("a", "b")]
    out = CliRunner().invoke(app, ["eval", "--data", str(talking_dir), *sum((["--model", str(c)] for c in copies), []),
                                   "--planted", "5", "-o", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    labels = [m["model"] for m in json.loads((tmp_path / "r.json").read_text())["models"]]
    assert labels == [f"{c} (onnxruntime)" for c in copies], labels
    assert all(f"| {c} (onnxruntime) |" in out.output for c in copies)
