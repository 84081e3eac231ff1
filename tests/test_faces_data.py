"""Face photos and the face crop (simviz_widgets.datasets.faces): padding, resizing, boxes from
landmarks, eye levelling, the photo list and the missing-data error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from face_helpers import require_face_data

from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets import faces
from simviz_widgets.datasets.faces import (
    FACE_SETUP_COMMAND,
    FaceDataMissingError,
    crop_face,
    face_box,
    face_crop_geometry,
    face_points,
    level_eyes,
    list_faces,
    load_face,
)


def _image(rows: int, cols: int) -> np.ndarray:
    """Pixel (r, c) = 10 r + c + 1 in every channel (never 0, so padding shows as 0)."""
    values = 10 * np.arange(rows)[:, None] + np.arange(cols)[None, :] + 1
    return np.repeat(values[:, :, None], 3, axis=2).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# padding to a square

def test_even_difference_pads_both_sides_equally():
    # 3 x 5 -> 5 x 5: one black row above, one below; size 5 keeps the square as it is (step 1).
    out = crop_face(_image(3, 5), size=5)[:, :, 0]
    expected = np.array([
        [0, 0, 0, 0, 0],
        [1, 2, 3, 4, 5],
        [11, 12, 13, 14, 15],
        [21, 22, 23, 24, 25],
        [0, 0, 0, 0, 0],
    ])
    np.testing.assert_array_equal(out, expected)


def test_odd_difference_puts_the_extra_pixel_after():
    # 2 x 5: three rows of padding, 1 above and 2 below (JavaScript rounds 1.5 up to 2 "after").
    out = crop_face(_image(2, 5), size=5)[:, :, 0]
    np.testing.assert_array_equal(out[:, 0], [0, 1, 11, 0, 0])
    # 4 x 1: three columns, 1 left and 2 right.
    out = crop_face(_image(4, 1), size=4)[:, :, 0]
    np.testing.assert_array_equal(out[1], [0, 11, 0, 0])
    geo = face_crop_geometry((4, 1), None, size=4)
    assert geo.pad_before == (0, 1) and geo.side == 4


# ------------------------------------------------------------------------------------------------
# resizing without half-pixel centres

def test_resize_samples_k_times_in_over_out_by_hand():
    # 3 x 5 padded to the 5 x 5 square S below, resized to 3 x 3: output k reads S at k * 5 / 3,
    # i.e. rows/cols 0 (exactly), 1 + 2/3 (between 1 and 2) and 3 + 1/3 (between 3 and 4).
    S = np.array([
        [0, 0, 0, 0, 0],
        [1, 2, 3, 4, 5],
        [11, 12, 13, 14, 15],
        [21, 22, 23, 24, 25],
        [0, 0, 0, 0, 0],
    ], dtype=np.float64)
    taps = [(0, 0, 0.0), (1, 2, 2 / 3), (3, 4, 1 / 3)]
    expected = np.zeros((3, 3))
    for i, (r0, r1, fr) in enumerate(taps):
        for j, (c0, c1, fc) in enumerate(taps):
            top = S[r0, c0] * (1 - fc) + S[r0, c1] * fc
            bottom = S[r1, c0] * (1 - fc) + S[r1, c1] * fc
            expected[i, j] = top * (1 - fr) + bottom * fr
    # e.g. the centre: rows 1..2 at 2/3, cols 1..2 at 2/3 -> (2 + 2/3 * 1) * 1/3 + (12 + 2/3) * 2/3
    assert expected[1, 1] == pytest.approx((2 + 2 / 3) / 3 + (12 + 2 / 3) * 2 / 3)
    out = crop_face(_image(3, 5), size=3)[:, :, 0]
    np.testing.assert_array_equal(out, np.rint(expected))


def test_upsampling_repeats_the_last_pixel_at_the_border():
    # 2 x 2 -> 4 x 4: k * 2 / 4 = 0, .5, 1, 1.5; the last reads pixel 1 and (clamped) pixel 1 again.
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, :, 0] = [[0, 100], [200, 40]]
    out = crop_face(image, size=4)[:, :, 0]
    np.testing.assert_array_equal(out[0], [0, 50, 100, 100])
    np.testing.assert_array_equal(out[:, 0], [0, 100, 200, 200])


def test_box_crops_then_pads_and_is_clipped_at_the_border():
    image = _image(6, 8)
    # rows 1..2, cols 2..6 (exclusive ends): 2 x 4 -> 4 x 4 with 1 row above, 1 below.
    out = crop_face(image, (1, 2, 3, 6), size=4)[:, :, 0]
    np.testing.assert_array_equal(out[1:3], image[1:3, 2:6, 0])
    assert out[0].sum() == 0 and out[3].sum() == 0
    # A box past the border is clipped: (-2, 5, 3, 20) -> rows 0..2, cols 5..7.
    geo = face_crop_geometry(image.shape, (-2, 5, 3, 20), size=3)
    assert geo.box == (0, 5, 3, 8) and geo.side == 3
    np.testing.assert_array_equal(crop_face(image, (-2, 5, 3, 20), size=3), image[0:3, 5:8])


def test_bad_boxes_and_images_are_refused():
    image = _image(4, 4)
    with pytest.raises(InputError, match="leaves no pixel"):
        crop_face(image, (10, 10, 20, 20))
    with pytest.raises(InputError, match="top, left, bottom, right"):
        crop_face(image, (0, 0, 2))
    with pytest.raises(InputTypeError, match="box\\[1\\]"):
        crop_face(image, (0, 0.5, 2, 2))
    with pytest.raises(InputError, match="uint8"):
        crop_face(image.astype(np.float32))
    before = image.copy()
    crop_face(image, (0, 0, 3, 2), size=7)
    np.testing.assert_array_equal(image, before)  # not modified


# ------------------------------------------------------------------------------------------------
# boxes from landmarks, eye levelling

def test_face_box_by_hand():
    # Eyes (100, 100), (100, 200), mouth (200, 150): mouth-eye distance sqrt(50^2 + 100^2) = 111.80;
    # side floor(111.80 / 0.45) = 248; centroid (133.33, 150): top floor(133.33 - 0.43 * 248) = 26,
    # left floor(150 - 124) = 26.
    assert face_box((100, 100), (100, 200), (200, 150)) == (26, 26, 274, 274)


def test_level_eyes_moves_a_marked_pixel_where_the_points_go():
    image = np.zeros((200, 300, 3), np.uint8)
    image[120, 60] = 255
    eyes_and_mouth = ((80.0, 100.0), (110.0, 190.0), (150.0, 150.0))
    rotated, degrees = level_eyes(image, *eyes_and_mouth)
    assert degrees == pytest.approx(math.degrees(math.atan2(30, 90)))
    # The right eye was lower; the turn lifts it. Where the marked pixel goes, by the same turn:
    angle, centre = math.radians(degrees), np.mean(eyes_and_mouth, axis=0)
    d = np.array([120.0, 60.0]) - centre
    target = centre + [d[0] * math.cos(angle) - d[1] * math.sin(angle),
                       d[1] * math.cos(angle) + d[0] * math.sin(angle)]
    found = np.unravel_index(rotated[:, :, 0].argmax(), rotated.shape[:2])
    assert np.abs(np.array(found) - target).max() <= 1.0
    # and the eyes end on one row
    from simviz_widgets.datasets.faces import _level_angle_centre, _rotate_points
    moved = _rotate_points(np.array(eyes_and_mouth), *_level_angle_centre(np.array(eyes_and_mouth)))
    assert moved[0, 0] == pytest.approx(moved[1, 0])


# ------------------------------------------------------------------------------------------------
# the photo list (no data needed) and the photos

def test_list_faces_says_who_is_who():
    info = list_faces()
    assert {n for n in info if info[n]["person"] == "Barack Obama"} == {
        "obama", "obama2", "obama3", "obama_partial_face", "obama_partial_face2"}
    assert info["biden"]["person"] == "Joe Biden"
    assert [n for n in info if info[n]["partial"]] == ["obama_partial_face", "obama_partial_face2"]
    assert all(info[f"sample{k}"]["person"] == "unknown" for k in range(1, 7))
    assert [len(info[f"sample{k}"]["boxes"]) for k in range(1, 7)] == [3, 2, 3, 3, 5, 4]
    for name, d in info.items():
        assert d["box"] == d["boxes"][0]
        for box, lm in zip(d["boxes"], d["landmarks"]):
            assert box == face_box(lm["left_eye"], lm["right_eye"], lm["mouth"])
            top, left, bottom, right = box
            assert bottom - top == right - left > 0
            for r, c in lm.values():  # every landmark inside its box, eyes above the mouth
                assert top <= r < bottom and left <= c < right, name
            assert lm["mouth"][0] > max(lm["left_eye"][0], lm["right_eye"][0]), name


def test_data_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMVIZ_DATA", str(tmp_path))
    assert faces.face_data_dir() == tmp_path
    monkeypatch.setenv("SIMVIZ_DATA", "")
    assert str(faces.face_data_dir()).endswith(".cache/simviz_widgets")


def test_missing_data_names_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMVIZ_DATA", str(tmp_path))
    with pytest.raises(FaceDataMissingError, match=FACE_SETUP_COMMAND):
        load_face("obama")
    # files without the completion stamp (an interrupted set-up) count as missing
    folder = tmp_path / faces.FACE_RECOGNITION_FOLDER
    folder.mkdir()
    (folder / "obama.jpg").write_bytes(b"not a photo")
    with pytest.raises(FaceDataMissingError, match="install_face_data.sh"):
        load_face("obama")
    assert issubclass(FaceDataMissingError, FileNotFoundError)


def test_unknown_names_and_options_are_refused():
    with pytest.raises(InputError, match="name"):
        load_face("nobody")
    with pytest.raises(InputError, match="crop=True"):
        load_face("obama", align=True)
    with pytest.raises(InputError, match="face"):
        face_points("biden", face=1)


def test_photos_load_and_points_land_in_the_crop():
    require_face_data()
    for name, d in list_faces().items():
        photo = load_face(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        for k, (box, lm) in enumerate(zip(d["boxes"], d["landmarks"])):
            geo = face_crop_geometry(photo.shape, box)
            points = face_points(name, face=k)
            for key, (r, c) in lm.items():  # the crop's pixel for each landmark, from the real shape
                assert points[key] == pytest.approx(((r - geo.origin[0]) / geo.step, (c - geo.origin[1]) / geo.step))
            crop = load_face(name, crop=True, face=k)
            assert crop.shape == (150, 150, 3)
            np.testing.assert_array_equal(crop, crop_face(photo, box))
    # the partial faces are obama.jpg's columns 419..909 and 0..550: same pixels up to JPEG noise
    whole = load_face("obama").astype(int)
    assert np.abs(load_face("obama_partial_face").astype(int) - whole[:, 419:910]).mean() < 4
    assert np.abs(load_face("obama_partial_face2").astype(int) - whole[:, :551]).mean() < 4


def test_aligned_crops_have_level_eyes():
    require_face_data()
    points = face_points("biden", align=True)
    assert points["left_eye"][0] == pytest.approx(points["right_eye"][0])
    tilted = face_points("biden")
    assert tilted["right_eye"][0] - tilted["left_eye"][0] > 5  # Biden's head is tilted in the photo
    assert load_face("biden", crop=True, align=True).shape == (150, 150, 3)
