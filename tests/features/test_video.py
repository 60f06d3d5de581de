"""Crop geometry, padding, resizing and normalisation, checked on hand-computed cases and a real face photo."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_sync.features.video import (CROP_KINDS, PAD_VALUE, Region, check_frame, crop_region, crop_square,
                                      get_crop_kind, legacy_face_box, mouth_box, to_model_input)
from edge_sync.spec import LEGACY_FACE, MOUTH

skdata = pytest.importorskip("skimage.data", reason="tests use scikit-image's bundled astronaut photo")

# Landmarks of Eileen Collins in skimage's astronaut photo (512x512), read off the image by eye:
ASTRO_MOUTH = (224.0, 144.0)  # centre of the lips (they span x 200..250, y 137..152)
ASTRO_NOSE_TIP_Y = 128.0
ASTRO_CHIN_Y = 175.0


def _pattern(h: int = 120, w: int = 160) -> np.ndarray:
    """A frame whose every pixel is distinguishable (so a misplaced crop cannot pass)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx % 256, yy % 256, (3 * xx + 7 * yy) % 256], -1).astype(np.uint8)


def test_crop_square_inside_image_is_exact_slice():
    f = _pattern()
    out = crop_square(f, cx=50, cy=40, side=30, out_size=30)
    np.testing.assert_array_equal(out, f[25:55, 35:65])
    small = crop_square(f, cx=50, cy=40, side=60, out_size=30)
    np.testing.assert_array_equal(small, cv2.resize(f[10:70, 20:80], (30, 30), interpolation=cv2.INTER_AREA))
    big = crop_square(f, cx=50, cy=40, side=20, out_size=40)
    np.testing.assert_array_equal(big, cv2.resize(f[30:50, 40:60], (40, 40), interpolation=cv2.INTER_LINEAR))
    assert big.dtype == np.uint8 and big.shape == (40, 40, 3)


def test_crop_square_pads_outside_with_110():
    f = _pattern()
    out = crop_square(f, cx=5, cy=110, side=20, out_size=20)  # spans x -5..15, y 100..120 (image height 120)
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out[:, :5], PAD_VALUE)  # left of the image
    np.testing.assert_array_equal(out[:, 5:], f[100:120, 0:15])
    far = crop_square(f, cx=-100, cy=-100, side=10, out_size=8)
    np.testing.assert_array_equal(far, PAD_VALUE)
    with pytest.raises(ValueError, match="side"):
        crop_square(f, 10, 10, 0, 8)


def test_legacy_face_box_hand_computed():
    # box x=100, y=50, w=80, h=60: bs = 40, centre (140, 80), crop_scale 0.4
    r = legacy_face_box((100, 50, 80, 60), crop_scale=0.4)
    assert (r.x0, r.y0, r.x1, r.y1) == pytest.approx((140 - 56, 80 - 40, 140 + 56, 80 + 72))
    assert r.width == pytest.approx(112) and r.height == pytest.approx(112)
    r0 = legacy_face_box((10, 20, 30, 30), crop_scale=0.0)  # no scale: the box's own square
    assert (r0.x0, r0.y0, r0.x1, r0.y1) == pytest.approx((10, 20, 40, 50))


def _syncnet_style_crop(frame: np.ndarray, box: tuple[float, float, float, float], cs: float = 0.4) -> np.ndarray:
    """Independent oracle written the way the syncnet_python pipeline describes it: pad the whole image by
    bs*(1+2cs) with 110, slice with int() on the padded coordinates, resize (bilinear) to 224."""
    x, y, w, h = box
    bs = max(w, h) / 2
    cx, cy = x + w / 2, y + h / 2
    bsi = int(bs * (1 + 2 * cs))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), mode="constant", constant_values=110)
    my, mx = cy + bsi, cx + bsi
    face = padded[int(my - bs):int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)):int(mx + bs * (1 + cs))]
    return cv2.resize(face, (224, 224))


@pytest.mark.parametrize("box", [(100.0, 50.0, 80.0, 60.0), (3.3, 2.7, 70.5, 71.2), (100.2, 60.9, 55.0, 58.0)])
def test_legacy_crop_matches_syncnet_style_padding(box):
    f = _pattern(140, 200)
    ours = get_crop_kind("legacy_face").crop(f, box)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, _syncnet_style_crop(f, box))


@pytest.fixture(scope="module")
def astronaut_face():
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("OpenCV 5 has no Haar cascades, which place this face box: pip install 'edge-sync[haar]'")
    img = skdata.astronaut()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rects = cascade.detectMultiScale(gray, 1.1, 5)
    assert len(rects) == 1
    return img, tuple(float(v) for v in rects[0])


def test_mouth_box_contains_the_mouth_on_a_real_face(astronaut_face):
    img, box = astronaut_face
    r = mouth_box(box)
    cx, cy = r.centre
    assert abs(cx - ASTRO_MOUTH[0]) < 8 and abs(cy - ASTRO_MOUTH[1]) < 8
    assert ASTRO_NOSE_TIP_Y < cy < ASTRO_CHIN_Y
    # the whole lips (x 200..250, y 137..152) are inside the square, and it is no bigger than the face box
    assert r.x0 <= 200 and r.x1 >= 250 and r.y0 <= 137 and r.y1 >= 152
    assert r.width == pytest.approx(r.height) and r.width <= box[2]
    crop = get_crop_kind("mouth").crop(img, box)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # lips and teeth are in the middle of the crop: the centre is redder/brighter than its top corners (hair/skin)
    centre = crop[40:72, 30:82].astype(float)
    assert centre[..., 0].mean() - centre[..., 2].mean() > 30  # lips are red


def test_region_bounds_floor_like_int_on_padded_coordinates():
    r = Region(-0.5, 1.7, 10.2, 11.9)
    assert r.bounds() == (-1, 1, 10, 11)


def test_to_model_input_mouth_and_legacy():
    crops = np.zeros((3, 112, 112, 3), np.uint8)
    crops[..., 0] = 255
    x = to_model_input(crops, MOUTH)
    assert x.shape == (1, 3, 3, 112, 112) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, 0], 1.0)
    np.testing.assert_allclose(x[0, 1], -1.0)
    face = np.zeros((2, 224, 224, 3), np.uint8)
    face[..., 0], face[..., 2] = 200, 10  # R=200, B=10
    y = to_model_input(face, LEGACY_FACE)
    assert y.shape == (1, 3, 2, 224, 224)
    np.testing.assert_allclose(y[0, 0], 10.0)  # BGR order, 0..255 unnormalised
    np.testing.assert_allclose(y[0, 2], 200.0)


def test_to_model_input_rejects_bad_crops():
    with pytest.raises(ValueError, match=r"\[T, 112, 112, 3\]"):
        to_model_input(np.zeros((3, 224, 224, 3), np.uint8), MOUTH)
    with pytest.raises(TypeError, match="uint8"):
        to_model_input(np.zeros((3, 112, 112, 3), np.float32), MOUTH)
    with pytest.raises(ValueError, match="at least one"):
        to_model_input(np.zeros((0, 112, 112, 3), np.uint8), MOUTH)


def test_check_frame_errors_say_how_to_fix():
    with pytest.raises(ValueError, match="grayscale.*COLOR_GRAY2RGB"):
        check_frame(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="uint8.*255"):
        check_frame(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        check_frame(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        check_frame([[0, 0, 0]])
    with pytest.raises(ValueError, match="grayscale"):
        crop_square(np.zeros((10, 10), np.uint8), 5, 5, 4, 4)


def test_crop_kind_registry():
    assert set(CROP_KINDS) >= {"mouth", "legacy_face"}
    assert CROP_KINDS["mouth"].size == MOUTH.size == 112
    assert CROP_KINDS["legacy_face"].size == LEGACY_FACE.size == 224
    with pytest.raises(ValueError, match="unknown crop kind"):
        get_crop_kind("nose")
    with pytest.raises(ValueError, match="positive"):
        mouth_box((0, 0, 0, 10))
    with pytest.raises(ValueError, match="empty crop region"):
        crop_region(_pattern(), Region(5, 5, 5, 9), 4)
