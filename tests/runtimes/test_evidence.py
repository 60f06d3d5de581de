"""The evidence null: a clip scored against its own soundtrack rolled out of any alignment."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edge_sync.runtimes.evidence import (MIN_EVIDENCE_RATIO, NULL_MARGIN_FRAMES, SHORT_NULL_MARGIN_FRAMES, TOO_SHORT,
                                         embedding_nulls, evidence_ratio, null_rolls, short_soundtrack,
                                         shifted_correlation, soundtrack_null_rolls, unsure_reason, weak_evidence)


@pytest.mark.parametrize("frames", [76, 77, 90, 250, 5000])
def test_no_roll_brings_an_alignment_back_within_reach(frames) -> None:
    k = 15
    rolls = null_rolls(frames, k)
    assert len(rolls) == min(3, frames - 75)  # distinct rolls only
    for r in rolls:
        # the true alignment (any of -K..K) lands at k_true - r, or k_true - r + frames after the wrap
        for k_true in range(-k, k + 1):
            for seen in (k_true - r, k_true - r + frames):
                assert abs(seen) >= k + NULL_MARGIN_FRAMES


def test_a_soundtrack_under_three_seconds_has_no_usual_null() -> None:
    assert null_rolls(75, 15) == [] and null_rolls(0, 15) == []
    assert evidence_ratio(0.1, []) is None and not weak_evidence(None)


@pytest.mark.parametrize("frames", [38, 39, 50, 75])
@pytest.mark.parametrize("reading", [-15, -10, -4, 0, 4, 10, 15])
def test_a_short_soundtrack_draws_its_rolls_nearer_and_keeps_the_reading_out_of_reach(frames, reading) -> None:
    """A short clip really 10 frames late, rolled as if it were in sync, would bring its own alignment back among
    the offsets read, and its null would equal its reading: the rolls are placed around the reading."""
    k = 15
    assert short_soundtrack(frames, k) and soundtrack_null_rolls(frames, k) == null_rolls(frames, k, short=True)
    rolls = null_rolls(frames, k, short=True, reading=reading)
    assert 1 <= len(rolls) <= 3 and len(set(rolls)) == len(rolls)
    for r in rolls:
        for seen in (reading - r, reading - r + frames, reading - r - frames):  # the reading's alignment, rolled
            assert abs(seen) >= k + 1 + SHORT_NULL_MARGIN_FRAMES


def test_under_a_second_and_a_half_no_roll_keeps_the_alignment_out_of_reach() -> None:
    assert soundtrack_null_rolls(37, 15) == [] and soundtrack_null_rolls(25, 15) == []
    assert soundtrack_null_rolls(76, 15) == null_rolls(76, 15) and not short_soundtrack(76, 15)
    assert soundtrack_null_rolls(1000, 15) == null_rolls(1000, 15)


def test_the_ratio_is_over_the_median_null() -> None:
    assert evidence_ratio(0.06, [0.01, 0.02, 0.05]) == pytest.approx(3.0)
    assert weak_evidence(evidence_ratio(0.029, [0.01, 0.02, 0.05]))
    assert not weak_evidence(evidence_ratio(0.02 * MIN_EVIDENCE_RATIO, [0.02, 0.02, 0.02]))
    assert weak_evidence(float("nan")) and evidence_ratio(0.1, [0.0, 0.0, float("nan")]) is None


def test_one_rule_says_why_a_reading_is_unsure() -> None:
    nulls = [0.01, 0.02, 0.05]  # median 0.02
    assert unsure_reason(0.05, 0.03, nulls) is None  # above the floor and 2.5x the null
    assert unsure_reason(0.05, None, []) is None  # no floor, no null: nothing to judge by
    assert "under this model's evidence floor 0.060" in unsure_reason(0.05, 0.06, nulls)
    assert "only 1.25x" in unsure_reason(0.025, 0.01, nulls)  # above the floor, not 1.5x the null
    assert "floor" in unsure_reason(float("nan"), 0.01, nulls)  # a NaN confidence is no evidence
    assert unsure_reason(0.025, None, []) is None and unsure_reason(0.025, None, nulls) is not None
    # a soundtrack too short for any null: unsure whatever the confidence, the floor's reason first
    assert unsure_reason(0.5, 0.01, [], too_short=True).startswith(TOO_SHORT)
    assert "floor" in unsure_reason(0.005, 0.01, [], too_short=True)


pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
pytest.importorskip("skimage", reason="the portrait ships in scikit-image: pip install 'edge-sync[dev]'")

from edge_sync.data.talking_photo import make_talking_photo_clip, write_video  # noqa: E402
from edge_sync.features.clip import prepare_clip  # noqa: E402
from edge_sync.features.media import iter_frames, read_audio  # noqa: E402
from edge_sync.features.mfcc import audio_to_mfcc_input  # noqa: E402
from edge_sync.runtimes.api import load  # noqa: E402
from edge_sync.spec import SAMPLES_PER_FRAME  # noqa: E402

SENTENCE = ("Every morning the baker opens the shop, lights the big oven and sells warm bread to the people "
            "who walk past on their way to work.")


@pytest.fixture(scope="module")
def engine():
    """The bundled student, which outputs its embeddings: sync_file reads the null off them."""
    engine = load()
    assert engine.embeddings
    return engine


@pytest.fixture(scope="module")
def streamed_engine(streamed_student):
    return streamed_student


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """An in-sync talking face (the bundled student reads it right) and the same face speaking other words."""
    root = tmp_path_factory.mktemp("evidence")
    clip = make_talking_photo_clip(root / "talk.mp4", SENTENCE, offset_frames=0, size=(320, 240), seed=3)
    other = make_talking_photo_clip(root / "other.mp4", "Seven quiet ships drift slowly past the harbour wall "
                                    "while the gulls circle over the fishing boats at dawn.", offset_frames=0,
                                    size=(320, 240), seed=4)
    frames = np.stack(list(iter_frames(clip.path)))
    sound = read_audio(other.path)
    sound = np.resize(sound, len(frames) * SAMPLES_PER_FRAME)  # the other words, as long as this video
    return clip.path, write_video(root / "dubbed.mp4", frames, sound)


def test_the_null_streams_equal_the_clip_run_against_its_rolled_soundtrack(streamed_engine, talk) -> None:
    engine = streamed_engine
    path, _ = talk
    (track,) = engine.sync_file(path).tracks
    audio = read_audio(path)
    rolls = null_rolls(len(audio) // SAMPLES_PER_FRAME, engine.contract.max_offset)
    assert track.start_frame == 0 and len(track.null_confidences) == len(rolls) == 3
    (segment,) = prepare_clip(path, preprocessing=engine.contract.video).segments
    assert segment.frames == track.result.frames
    offline = []
    for roll in rolls:
        sound = np.roll(audio, -roll * SAMPLES_PER_FRAME)[:segment.frames * SAMPLES_PER_FRAME + 240]
        rolled = dataclasses.replace(segment, audio=audio_to_mfcc_input(sound, segment.frames))
        offline.append(engine.run_segment(rolled).confidence)
    # equal but for the rolled streams' first MFCC windows (they continue the soundtrack's pre-emphasis): within
    # 2%, while the three rolls' nulls are further apart than that
    np.testing.assert_allclose(track.null_confidences, offline, rtol=0.02)
    nulls = sorted(offline)
    assert nulls[1] > 1.05 * nulls[0] and nulls[2] > 1.05 * nulls[1]


def test_the_embedding_null_is_read_off_the_segments_own_embeddings(engine, talk) -> None:
    """With the embedding outputs, the null is the segment's audio embeddings rolled round the segment against its
    video embeddings: exactly that, from an offline pass (float16 storage aside)."""
    path, _ = talk
    (track,) = engine.sync_file(path).tracks
    (segment,) = prepare_clip(path, preprocessing=engine.contract.video).segments
    outputs = engine.run_outputs(segment.audio, segment.video_window(0, segment.frames))
    offline = embedding_nulls(outputs["audio_emb"], outputs["video_emb"], engine.contract.max_offset)
    assert len(offline) == 3
    np.testing.assert_allclose(track.null_confidences, offline, rtol=2e-3)
    # the correlation the model outputs is the one the null rolls: numpy's twin of the model's own
    np.testing.assert_allclose(shifted_correlation(outputs["video_emb"], outputs["audio_emb"], 15),
                               outputs["correlation"], atol=1e-5)


def test_the_embedding_null_decides_as_the_streamed_one_without_running_the_model_again(
        engine, streamed_engine, talk, monkeypatch) -> None:
    """Both nulls measure the same thing: on the in-sync clip and the dubbed one, each embedding null lies within
    the streamed nulls' roll-to-roll spread, and the verdicts agree. Only the streamed one runs more windows."""
    for path in talk:
        streamed, embedded = streamed_engine.sync_file(path), engine.sync_file(path)
        lo, hi = min(streamed.main.null_confidences), max(streamed.main.null_confidences)
        assert all(0.8 * lo <= c <= 1.25 * hi for c in embedded.main.null_confidences)
        assert embedded.low_evidence == streamed.low_evidence
    calls = {}
    for name, e, null_check in (("embedding", engine, True), ("streamed", streamed_engine, True),
                                ("none", engine, False)):
        run, count = e._session.run, []
        monkeypatch.setattr(e._session, "run", lambda a, v, run=run, count=count: count.append(1) or run(a, v))
        e.sync_file(talk[0], null_check=null_check)
        monkeypatch.undo()
        calls[name] = len(count)
    assert calls["embedding"] == calls["none"] < calls["streamed"]


def test_a_face_dubbed_with_other_words_is_unsure_where_the_floor_lets_it_through(engine, talk) -> None:
    path, dubbed = talk
    right = engine.sync_file(path)
    assert abs(right.offset_frames) <= 1 and right.evidence_ratio >= MIN_EVIDENCE_RATIO and not right.low_evidence
    wrong = engine.sync_file(dubbed)
    assert not wrong.below_floor  # the model's fixed floor alone would give this reading a verdict
    assert wrong.low_evidence and wrong.evidence_ratio < MIN_EVIDENCE_RATIO
    assert any(w.startswith("UNSURE:") and "out of any alignment" in w for w in wrong.warnings)
    assert wrong.to_dict()["evidence_ratio"] == pytest.approx(wrong.evidence_ratio, abs=1e-4)


def _cut(path, seconds: float, out):
    """The first ``seconds`` of a clip, video and sound, as a new file."""
    frames = np.stack(list(iter_frames(path)))[:round(seconds * 25)]
    return write_video(out, frames, read_audio(path)[:len(frames) * SAMPLES_PER_FRAME])


def test_a_short_clip_reads_a_null_drawn_nearer_and_one_too_short_is_unsure(engine, talk, tmp_path) -> None:
    """1-3 s cuts of real clips read right far less often than whole clips, with no less confidence: a 2 s clip
    is checked against rolls nearer its alignment, and a 1 s one cannot be checked, so it is never trusted."""
    from edge_sync.usecases.desync import desync_file
    from edge_sync.usecases.fix import fix_file

    path, _ = talk
    two = engine.sync_file(_cut(path, 2.0, tmp_path / "two.mp4"))
    assert len(two.main.null_confidences) == 3 and two.evidence_ratio is not None and not two.main.null_too_short
    one_path = _cut(path, 1.0, tmp_path / "one.mp4")
    one = engine.sync_file(one_path)
    assert one.main.null_confidences == [] and one.main.null_too_short and one.low_evidence
    assert any(w.startswith("UNSURE: " + TOO_SHORT) for w in one.warnings) and one.to_dict()["low_evidence"]
    assert not engine.sync_file(one_path, null_check=False).low_evidence  # asked for no null: the floor alone
    with pytest.raises(Exception, match=TOO_SHORT):
        fix_file(one_path, tmp_path / "fixed.mp4", engine=engine)
    assert not (tmp_path / "fixed.mp4").exists()
    flag = desync_file(engine, one_path)
    assert flag.flagged is None and flag.probability is None and flag.reasons[0].startswith(TOO_SHORT)
    assert not flag.no_speech  # it has speech: the headline says NOT JUDGED, not NO SPEECH


@pytest.mark.parametrize("late", [10, -10])
def test_a_short_clip_really_out_of_sync_keeps_its_verdict(engine, talk, tmp_path, late) -> None:
    """2 s with the sound 10 frames late (or early): the near rolls are placed around the reading, so the clip's
    own alignment does not come back among the offsets read and make its null equal its reading (it did: 0.99x)."""
    path, _ = talk
    frames, sound = np.stack(list(iter_frames(path)))[75:125], read_audio(path)
    moved = np.pad(sound, (max(late, 0) * SAMPLES_PER_FRAME, 0))[(75 - min(late, 0)) * SAMPLES_PER_FRAME:]
    sync = engine.sync_file(write_video(tmp_path / "late.mp4", frames, moved[:50 * SAMPLES_PER_FRAME]))
    assert sync.offset_frames == late and len(sync.main.null_confidences) == 3
    assert sync.evidence_ratio >= MIN_EVIDENCE_RATIO and not sync.low_evidence


def test_the_null_can_be_left_out(engine, talk) -> None:
    path, dubbed = talk
    sync = engine.sync_file(dubbed, null_check=False)
    assert sync.main.null_confidences == [] and sync.evidence_ratio is None and not sync.low_evidence


def test_the_cli_measures_the_null_unless_told_not_to(talk, tmp_path) -> None:
    from typer.testing import CliRunner

    from edge_sync.cli import app

    _, dubbed = talk
    with_null, without = (json.loads(CliRunner().invoke(app, ["sync", str(dubbed), "--json", *flag]).stdout)
                          for flag in ((), ("--no-null-check",)))
    assert with_null["low_evidence"] and with_null["evidence_ratio"] < MIN_EVIDENCE_RATIO
    assert not without["low_evidence"] and without["evidence_ratio"] is None
    assert with_null["offset_frames"] == without["offset_frames"]  # the reading itself is the same
    for flag, unsure in (((), True), (("--no-null-check",), False)):  # score: one file, and a corpus journal
        one = json.loads(CliRunner().invoke(app, ["score", str(dubbed), "--json", *flag]).stdout)
        journal = tmp_path / f"scores{len(flag)}.jsonl"
        done = CliRunner().invoke(app, ["score", str(dubbed), "-o", str(journal), "--workers", "0", *flag])
        assert done.exit_code == 0, done.output
        (line,) = [json.loads(x) for x in journal.read_text().splitlines()]
        assert one["low_evidence"] is line["low_evidence"] is unsure and line["null_check"] is unsure


def test_desync_judges_a_short_picture_with_enough_sound_as_sync_does(engine, talk, tmp_path) -> None:
    """1 s of video on 2 s of sound: sync_file checks it against a null drawn from the 2 s soundtrack, so desync must
    judge it too (it measured 'too short' on the video's length and said NOT JUDGED)."""
    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.heads import heads_for

    path, _ = talk
    frames, sound = np.stack(list(iter_frames(path)))[50:75], read_audio(path)
    clip = write_video(tmp_path / "short_picture.mp4", frames, sound[50 * SAMPLES_PER_FRAME:100 * SAMPLES_PER_FRAME])
    sync = engine.sync_file(clip)
    assert not sync.main.null_too_short and sync.main.null_confidences  # a null from the 2 s soundtrack
    flag = flag_sync(sync, heads_for(engine.manifest))
    assert not any(r.startswith(TOO_SHORT) for r in flag.reasons + flag.warnings)
