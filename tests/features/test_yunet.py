"""YuNet on onnxruntime gives the faces OpenCV's FaceDetectorYN gives: same boxes, landmarks and scores, on a real
face photo (pasted small, large, mirrored, two at once) and on frames of the shared real clips."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sync.features.faces import YuNetDetector, get_detector

pytest.importorskip("onnxruntime", reason="pip install 'edge-sync[onnxruntime]'")
skdata = pytest.importorskip("skimage.data", reason="tests use scikit-image's bundled astronaut photo")
REAL_CLIPS = Path(__file__).resolve().parents[2].parent / "shared" / "real_clips"


def _scenes() -> list[np.ndarray]:
    face = skdata.astronaut()[:260, 110:370]
    scenes = []
    for side, at, mirrored in ((96, (30, 40), False), (150, (200, 60), True), (260, (0, 0), False)):
        frame = np.full((360, 640, 3), 90, np.uint8)
        small = cv2.resize(face[:, ::-1] if mirrored else face, (side, side), interpolation=cv2.INTER_AREA)
        frame[at[1]:at[1] + side, at[0]:at[0] + side] = small
        scenes.append(frame)
    two = scenes[0].copy()
    two[200:350, 400:550] = cv2.resize(face, (150, 150), interpolation=cv2.INTER_AREA)
    return scenes + [two, np.full((97, 131, 3), 90, np.uint8)]  # odd sizes pad to 32s; a blank frame finds nothing


def _rows(boxes) -> np.ndarray:
    return np.array([[b.x, b.y, b.w, b.h, *np.ravel(b.landmarks), 100 * b.score] for b in boxes]).reshape(-1, 15)


def _agree(frames) -> int:
    ort = YuNetDetector(runner="onnxruntime", raw_boxes=True)
    ocv = YuNetDetector(runner="opencv", raw_boxes=True)
    faces = 0
    for frame in frames:
        a, b = _rows(ort.detect(frame)), _rows(ocv.detect(frame))
        assert a.shape == b.shape
        order_a, order_b = np.lexsort(a[:, :2].T), np.lexsort(b[:, :2].T)
        np.testing.assert_allclose(a[order_a], b[order_b], atol=0.01)  # pixels, and score in 1/100ths
        region = (100.0, 20.0, 420.0, 340.0)
        np.testing.assert_allclose(_rows(ort.detect_region(frame, region, 150.0)),
                                   _rows(ocv.detect_region(frame, region, 150.0)), atol=0.01)
        faces += len(a)
    return faces


def test_onnxruntime_and_opencv_runners_find_the_same_faces():
    assert _agree(_scenes()) == 5  # one face in each of three scenes, two in the fourth, none in the blank


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason="shared/real_clips is not here")
def test_runners_agree_on_real_clips():
    from edge_sync.features.media import iter_frames

    frames = []
    for name in ("ed_tedlieu.mp4", "vr_4.mp4", "mm_speech.mp4", "w2ll_chaplin.mp4"):
        if (REAL_CLIPS / name).is_file():
            frames += [f for i, f in enumerate(iter_frames(REAL_CLIPS / name)) if i % 25 == 0]
    if not frames:
        pytest.skip("none of the chosen clips is in shared/real_clips")
    assert _agree(frames) >= len(frames) * 0.9


def test_runner_choice():
    assert get_detector("yunet").runner == "onnxruntime"  # installed here: the faster runner is the default
    assert YuNetDetector(runner="opencv").runner == "opencv"
    with pytest.raises(ValueError, match="runner"):
        YuNetDetector(runner="tensorflow")
