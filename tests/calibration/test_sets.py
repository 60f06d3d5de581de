"""Calibration sets: built from synthetic clips or real videos, versioned by content, verified on load."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_sync.calibration import (CalibrationError, build_calibration_set, load_calibration_set,
                                   write_calibration_set)
from edge_sync.calibration.sets import DATA_FILE, MANIFEST
from edge_sync.spec import LEGACY_FACE, MOUTH, ModelContract


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    return build_calibration_set("synthetic", tmp_path_factory.mktemp("calib") / "set", count=4, frames=20,
                                 seed=7, progress=False)


def test_manifest_records_source_preprocessing_statistics_and_hash(synthetic_set):
    calib = load_calibration_set(synthetic_set, ModelContract())
    m = calib.manifest
    assert m["source"] == {"kind": "synthetic", "seed": 7, "split": "train"}
    assert m["preprocessing"]["name"] == MOUTH.name and m["audio_input"] == "mfcc"
    assert (len(calib), calib.frames) == (4, 20) and calib.audio.shape == (4, 1, 13, 80)
    assert calib.id.startswith("synthetic-4x20-") and calib.id.endswith(calib.sha256[:12])
    stats = m["statistics"]
    assert stats["video"]["min"] >= -1.0 and stats["video"]["max"] <= 1.0
    assert stats["audio"]["std"] > 1.0  # raw MFCC scale, not normalised
    assert calib.reference()["content_sha256"] == calib.sha256


def test_same_seed_gives_the_same_id_and_another_seed_another(synthetic_set, tmp_path):
    again = build_calibration_set("synthetic", tmp_path / "again", count=4, frames=20, seed=7, progress=False)
    other = build_calibration_set("synthetic", tmp_path / "other", count=4, frames=20, seed=8, progress=False)
    first = load_calibration_set(synthetic_set)
    assert load_calibration_set(again).id == first.id
    assert load_calibration_set(other).id != first.id


def test_pairs_are_model_ready_at_any_length(synthetic_set):
    calib = load_calibration_set(synthetic_set)
    pairs = list(calib.pairs())
    assert len(pairs) == 4
    audio, video = pairs[0]
    assert audio.shape == (1, 1, 13, 80) and video.shape == (1, 3, 20, 112, 112) and video.dtype == np.float32
    np.testing.assert_array_equal(video[0], MOUTH.normalise(calib.crops[0]))
    long_audio, long_video = next(calib.pairs(frames=50))  # joins consecutive clips
    assert long_audio.shape[-1] == 200 and long_video.shape[2] == 50
    np.testing.assert_array_equal(long_video[0, :, 20:40], MOUTH.normalise(calib.crops[1]))
    short_audio, short_video = next(calib.pairs(frames=5))
    assert short_audio.shape[-1] == 20 and short_video.shape[2] == 5
    assert len(list(calib.pairs(limit=2))) == 2


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_modified_data_is_refused(synthetic_set, tmp_path):
    bad = _copy(synthetic_set, tmp_path / "bad")
    with np.load(bad / DATA_FILE) as d:
        audio, crops = d["audio"].copy(), d["crops"].copy()
    crops[0, 0, 0, 0, 0] ^= 1
    np.savez(bad / DATA_FILE, audio=audio, crops=crops)
    with pytest.raises(CalibrationError, match="content hash"):
        load_calibration_set(bad)


def test_truncated_data_is_refused(synthetic_set, tmp_path):
    bad = _copy(synthetic_set, tmp_path / "trunc")
    data = (bad / DATA_FILE).read_bytes()
    (bad / DATA_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CalibrationError, match="truncated or corrupt"):
        load_calibration_set(bad)


def test_other_spec_version_is_refused(synthetic_set, tmp_path):
    bad = _copy(synthetic_set, tmp_path / "spec")
    m = json.loads((bad / MANIFEST).read_text())
    m["spec_version"] = 99
    (bad / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(CalibrationError, match="contract v99"):
        load_calibration_set(bad)


def test_nan_audio_wrong_shapes_and_empty_sets_are_refused(tmp_path):
    crops = np.zeros((2, 10, 112, 112, 3), np.uint8)
    audio = np.zeros((2, 1, 13, 40), np.float32)
    nan = audio.copy()
    nan[1, 0, 3, 7] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        write_calibration_set(tmp_path / "nan", nan, crops, {"kind": "test"})
    with pytest.raises(CalibrationError, match="audio must be"):
        write_calibration_set(tmp_path / "steps", audio[..., :39], crops, {"kind": "test"})
    with pytest.raises(CalibrationError, match="crops must be uint8"):
        write_calibration_set(tmp_path / "dtype", audio, crops.astype(np.float32), {"kind": "test"})
    with pytest.raises(CalibrationError, match="empty"):
        write_calibration_set(tmp_path / "empty", audio[:0], crops[:0], {"kind": "test"})
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no half-written temp folders left


def test_set_for_another_contract_is_refused(synthetic_set):
    legacy = ModelContract(video=LEGACY_FACE)
    with pytest.raises(CalibrationError, match="legacy_face224"):
        load_calibration_set(synthetic_set, legacy)


def test_unknown_sources_and_synthetic_legacy_crops_are_refused(tmp_path):
    with pytest.raises(CalibrationError, match="synthetic' or a folder"):
        build_calibration_set("nowhere", tmp_path / "x", count=1, progress=False)
    with pytest.raises(CalibrationError, match="build the set from real videos"):
        build_calibration_set("synthetic", tmp_path / "y", count=1, preprocessing=LEGACY_FACE.name, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_not_a_set_is_refused(tmp_path):
    with pytest.raises(CalibrationError, match="not a calibration set"):
        load_calibration_set(tmp_path)


def test_folder_source_cuts_windows_from_real_face_tracks(tmp_path):
    from edge_sync.data.talking_photo import make_talking_photo_clip

    videos = tmp_path / "videos"
    for i, text in enumerate(["calibration needs real faces", "and the sound that goes with them"]):
        make_talking_photo_clip(videos / f"speaker{i}" / "clip.mp4", text, size=(320, 240), seed=i)
    (videos / "notes.txt").write_text("not a video")
    (videos / "broken.mp4").write_bytes(b"not really an mp4")
    path = build_calibration_set(videos, tmp_path / "calib", count=3, frames=25, progress=False)
    calib = load_calibration_set(path, ModelContract())
    assert calib.manifest["source"]["kind"] == "folder" and calib.manifest["source"]["skipped"] == 1
    assert len(calib) == 3 and calib.frames == 25 and calib.crops.dtype == np.uint8
    assert calib.crops.std() > 5  # real pixels of a face, not padding


def test_mixed_sources_share_the_count_and_record_each_part(tmp_path):
    """A mix (synthetic mouths + real face tracks) takes an equal share from each source, keeps them in order and
    records every part, so an INT8 artifact calibrated on it says what it saw."""
    from edge_sync.data.talking_photo import make_talking_photo_clip

    videos = tmp_path / "videos"
    make_talking_photo_clip(videos / "clip.mp4", "calibration needs real faces and the sound that goes with them",
                            size=(320, 240), seed=1)
    path = build_calibration_set(["synthetic", videos], tmp_path / "calib", count=3, frames=25, seed=7,
                                 progress=False)
    calib = load_calibration_set(path, ModelContract())
    source = calib.manifest["source"]
    assert source["kind"] == "mix" and calib.id.startswith("mix-3x25-")
    assert [(p["kind"], p["count"]) for p in source["parts"]] == [("synthetic", 2), ("folder", 1)]
    alone = load_calibration_set(build_calibration_set("synthetic", tmp_path / "syn", count=2, frames=25, seed=7,
                                                       progress=False))
    np.testing.assert_array_equal(calib.crops[:2], alone.crops)  # the synthetic share first, as built alone
    assert not np.array_equal(calib.crops[2], calib.crops[0])
    with pytest.raises(CalibrationError, match="synthetic' or a folder"):  # every source checked before any work
        build_calibration_set(["synthetic", tmp_path / "nowhere"], tmp_path / "bad", count=2, progress=False)
    with pytest.raises(CalibrationError, match="number of sources"):
        build_calibration_set(["synthetic", videos], tmp_path / "bad", count=1, progress=False)
    assert not (tmp_path / "bad").exists()
