"""No speech, no verdict: on a silent or noise-only soundtrack `sync`, `score`, `desync` and `speakers` say "no
speech" and never put P(in sync) above chance; a soundtrack covering 2 s of a 10 s video is reported as padding;
a speaking clip keeps its verdicts. The same face video is written with each soundtrack."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sync.spec import AUDIO_RATE, SAMPLES_PER_FRAME

REAL_CLIPS = Path(__file__).resolve().parents[2].parent / "shared" / "real_clips"
FRAMES = 250  # 10 s
CHANCE = 3 / 31  # |offset| <= 1 of the model's 31 offsets


@pytest.fixture(scope="module")
def soundtracks(tmp_path_factory) -> dict[str, Path]:
    from edge_sync.data.talking_photo import astronaut, mouth_openness, render_frames, speak, write_video

    root = tmp_path_factory.mktemp("soundtracks")
    voice = speak("The quick brown fox jumps over the lazy dog while seven wizards quietly judge the boxing match.")
    speech = np.zeros(FRAMES * SAMPLES_PER_FRAME, np.float32)
    speech[:min(len(voice), len(speech))] = voice[:len(speech)]
    video = render_frames(astronaut(), mouth_openness(speech, FRAMES))
    audio = {"speech": speech, "silence": np.zeros_like(speech),
             "noise": np.random.default_rng(0).normal(0.0, 0.05, len(speech)).astype(np.float32),
             "2 of 10 s": speech[:2 * AUDIO_RATE]}
    return {name: write_video(root / f"{name.replace(' ', '_')}.mp4", video, a) for name, a in audio.items()}


@pytest.fixture(scope="module")
def synced(engine, soundtracks):
    return {name: engine.sync_file(path) for name, path in soundtracks.items()}


@pytest.mark.parametrize("name", ["silence", "noise"])
def test_sync_file_says_no_speech(synced, name) -> None:
    sync = synced[name]
    res = sync.main.result
    assert sync.no_speech and res.no_speech and res.speech.fraction == 0.0
    assert sync.speech is res.speech  # the clip's answer, as docs/runtime.md reads it (result.speech.fraction)
    assert res.speech.sound_fraction == (0.0 if name == "silence" else 1.0)
    assert res.confidence == 0.0 and res.probability <= 1 / 31 + 1e-9
    assert sync.audio_coverage == pytest.approx(1.0, abs=0.01)
    d = sync.to_dict(per_frame=False)
    assert d["no_speech"] is True and d["speech"]["no_speech"] is True and d["speech"]["fraction"] == 0.0
    assert any(w.startswith(("no speech", "no sound")) for w in d["warnings"])


def test_a_soundtrack_covering_2_of_10_seconds_is_reported(synced) -> None:
    sync = synced["2 of 10 s"]
    assert sync.audio_coverage == pytest.approx(0.2, abs=0.01)
    assert any("covers 2.0 s of the 10.0 s video" in w and "padded" in w for w in sync.warnings)
    speech = sync.main.result.speech
    assert speech.audio_coverage == pytest.approx(0.2, abs=0.01) and speech.padded_frames >= 195
    assert speech.fraction == pytest.approx(0.2, abs=0.05) and not sync.no_speech
    d = sync.to_dict(per_frame=False)
    assert d["audio_coverage"] == pytest.approx(0.2, abs=0.01) and d["speech"]["padded_seconds"] >= 7.8


def test_speech_keeps_its_verdicts(synced, engine) -> None:
    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.heads import heads_for
    from edge_sync.usecases.quality import score_sync

    sync = synced["speech"]
    res = sync.main.result
    assert not sync.no_speech and res.speech.fraction > 0.5 and res.confidence > 0 and sync.warnings == []
    heads = heads_for(engine.manifest)
    score = score_sync(sync, heads)
    assert score.speech_fraction > 0.5 and not score.no_speech and score.audio_coverage == pytest.approx(1, abs=.01)
    if heads is not None:
        assert score.in_sync is True and score.sync_probability > CHANCE
        assert flag_sync(sync, heads).flagged is False


@pytest.mark.parametrize("name", ["silence", "noise"])
def test_use_cases_call_nothing_in_or_out_of_sync(synced, engine, name) -> None:
    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.heads import heads_for
    from edge_sync.usecases.quality import score_sync
    from edge_sync.usecases.speakers import detect_speakers

    sync, heads = synced[name], heads_for(engine.manifest)
    score = score_sync(sync, heads)
    assert score.no_speech and score.in_sync is None and score.lse_c == 0.0 and score.speech_fraction == 0.0
    assert score.sync_probability is None or score.sync_probability <= CHANCE
    assert score.to_dict()["no_speech"] is True
    flag = flag_sync(sync, heads)
    assert flag.flagged is None and flag.probability is None and flag.no_speech
    assert len(flag.reasons) == 1 and flag.reasons[0].startswith(("no speech", "no sound"))
    speakers = detect_speakers(sync, heads)
    assert speakers.no_speech and speakers.turns == []
    assert all(not t.probability.any() for t in speakers.tracks)
    assert speakers.to_dict(per_frame=False)["no_speech"] is True


COVERS_2_OF_10 = "the soundtrack covers 2.0 s of the 10.0 s video (20%); the rest was padded with silence"


def test_use_cases_judge_a_2_of_10_second_soundtrack_on_its_2_seconds(synced, engine) -> None:
    """The use cases read the 2 s the soundtrack covers, not 8 s of padded silence after it (which read OUT OF
    SYNC at P 0.48 and a desync flag for a drifting offset): in sync, not flagged, and the padding said."""
    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.heads import heads_for
    from edge_sync.usecases.quality import score_sync
    from edge_sync.usecases.speakers import detect_speakers

    sync, heads = synced["2 of 10 s"], heads_for(engine.manifest)
    score = score_sync(sync, heads)
    assert not score.no_speech and score.in_sync is not False and score.frames == FRAMES
    assert 50 <= score.judged_frames <= 52 and score.speech_fraction > 0.9
    assert COVERS_2_OF_10 in score.warnings and score.audio_coverage == pytest.approx(0.2, abs=0.01)
    assert score.to_dict()["warnings"] == score.warnings and score.to_dict()["judged_frames"] == score.judged_frames
    flag = flag_sync(sync, heads)
    assert flag.flagged is False and flag.reasons == [] and COVERS_2_OF_10 in flag.warnings
    assert flag.to_dict()["audio_coverage"] == pytest.approx(0.2, abs=0.01)
    if heads is not None:
        assert score.in_sync is True and score.sync_probability > 0.5 and flag.probability < flag.threshold
    speakers = detect_speakers(sync, heads)
    (track,) = speakers.tracks
    assert COVERS_2_OF_10 in speakers.to_dict(per_frame=False)["warnings"]
    assert track.probability[score.judged_frames:].max() == 0.0  # nobody is heard past the soundtrack
    assert [(t["start_frame"], t["track_id"]) for t in speakers.turns] == [(0, track.track_id)]


def test_a_covered_span_too_short_to_judge_gets_no_verdict(synced, engine) -> None:
    """The same clip as if its soundtrack stopped after 8 frames (0.3 s, under the 0.5 s of speech a result
    needs): no in/out-of-sync verdict and no flag, with the reason, instead of a judgement on 0.3 s."""
    from dataclasses import replace

    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.heads import heads_for
    from edge_sync.usecases.quality import score_sync
    from edge_sync.usecases.speakers import detect_speakers

    sync, heads = replace(synced["2 of 10 s"], audio_frames=8.0), heads_for(engine.manifest)
    why = "the soundtrack covers 0.3 s of this face's 10.0 s, too little to judge (under 0.5 s)"
    score = score_sync(sync, heads)
    assert score.no_speech and score.in_sync is None and score.lse_c == 0.0 and score.judged_frames == 8
    assert score.sync_probability is None or score.sync_probability <= CHANCE
    assert any(w.startswith(why) for w in score.warnings)
    flag = flag_sync(sync, heads)
    assert flag.flagged is None and flag.probability is None and flag.no_speech
    assert len(flag.reasons) == 1 and flag.reasons[0].startswith(why)
    speakers = detect_speakers(sync, heads)
    assert speakers.no_speech and speakers.turns == [] and not speakers.tracks[0].probability.any()


def test_a_fully_covered_clip_is_judged_exactly_as_before(synced, engine) -> None:
    """A normal clip (its soundtrack covers the video) is judged on the very numbers the heads were fitted on:
    the track itself, not a recomputed copy, so every score equals the old whole-track computation exactly."""
    from edge_sync.usecases.desync import flag_sync
    from edge_sync.usecases.features import (DESYNC_FEATURES, QUALITY_FEATURES, desync_features, judged_track,
                                             quality_features, speaker_frame_features, vector)
    from edge_sync.usecases.heads import heads_for
    from edge_sync.usecases.quality import score_sync
    from edge_sync.usecases.speakers import detect_speakers

    sync, heads = synced["speech"], heads_for(engine.manifest)
    main, res = sync.main, sync.main.result
    assert judged_track(sync, main) == (main, None)
    score = score_sync(sync, heads)
    assert (score.lse_d, score.lse_c, score.offset_frames, score.frames, score.judged_frames) == (
        res.min_dist, res.confidence, res.offset_frames, res.frames, res.frames)
    assert score.speech_fraction == res.speech.fraction and score.warnings == sync.warnings == []
    flag = flag_sync(sync, heads)
    assert flag.features == desync_features(sync, main) and flag.warnings == []
    speakers = detect_speakers(sync, heads)
    if heads is None:
        return
    assert score.sync_probability == float(heads.get("quality").probability(vector(quality_features(main),
                                                                                   QUALITY_FEATURES)))
    assert flag.probability == float(heads.get("desync").probability(vector(desync_features(sync, main),
                                                                            DESYNC_FEATURES)))
    for found, track in zip(speakers.tracks, sync.tracks):
        np.testing.assert_array_equal(found.probability,
                                      heads.get("speakers").probability(speaker_frame_features(sync, track)))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sync.cli", *args], capture_output=True, text=True)


def test_the_command_line_says_no_speech(soundtracks) -> None:
    out = _cli("sync", str(soundtracks["silence"]), "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["no_speech"] is True and d["probability"] <= 1 / 31 + 1e-4 and d["confidence"] == 0.0
    assert d["speech"]["fraction"] == 0.0 and d["audio_coverage"] == pytest.approx(1.0, abs=0.01)
    headline = _cli("sync", str(soundtracks["silence"])).stdout.splitlines()[0]
    assert "NO SPEECH, no offset measured" in headline and " ms, sound late" not in headline  # not a measurement
    out = _cli("sync", str(soundtracks["2 of 10 s"]))
    assert "covers 2.0 s of the 10.0 s video" in out.stdout and "speech in 20%" in out.stdout
    paths = [str(soundtracks[n]) for n in ("silence", "noise", "speech")]
    rows = [json.loads(line) for line in _cli("score", *paths, "--json").stdout.splitlines()]
    assert [r["no_speech"] for r in rows] == [True, True, False]
    assert all(r["in_sync"] is None and (r["sync_probability"] or 0) <= CHANCE + 1e-4 for r in rows[:2])  # 4 digits
    flags = [json.loads(line) for line in _cli("desync", *paths, "--json").stdout.splitlines()]
    assert [f["flagged"] for f in flags[:2]] == [None, None] and flags[2]["no_speech"] is False
    assert "NO SPEECH" in _cli("desync", paths[0]).stdout


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason="shared/real_clips is not here")
def test_a_real_clip_speaks(engine) -> None:
    path = REAL_CLIPS / "lrs3_s1.mp4"
    if not path.exists():
        pytest.skip("lrs3_s1.mp4 is not in shared/real_clips")
    sync = engine.sync_file(path)
    assert not sync.no_speech and sync.main.result.speech.fraction > 0.8
    assert sync.audio_coverage == pytest.approx(1.0, abs=0.02) and sync.warnings == []


def test_fix_refuses_to_move_sound_by_a_guess(synced, soundtracks, tmp_path) -> None:
    from edge_sync.errors import EdgeSyncError
    from edge_sync.usecases.fix import fix_file

    with pytest.raises(EdgeSyncError, match="no speech in the soundtrack"):
        fix_file(soundtracks["silence"], tmp_path / "out.mp4", sync=synced["silence"])
    assert not (tmp_path / "out.mp4").exists()
    forced = fix_file(soundtracks["silence"], tmp_path / "forced.mp4", delay_ms=0.0)  # a forced delay still works
    assert forced.output == str(tmp_path / "forced.mp4")
