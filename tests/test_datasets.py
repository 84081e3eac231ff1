"""datasets/: bundled photos, the stereo pair's disparity convention, views with exact geometry."""

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label, regionprops
from skimage.transform import ProjectiveTransform, rotate, warp

from simviz_widgets.datasets import (
    VIEW_KINDS,
    UnknownPhotoError,
    default_pair,
    list_photos,
    load_photo,
    stereo_motorcycle,
    views,
)

SKIMAGE = ["astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
           "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
           "text"]
OTHERS = ["motorcycle_left", "motorcycle_right", "china", "flower", "grace_hopper"]


# ----------------------------------------------------------------------------- photos


def test_list_photos_is_exactly_the_bundled_set():
    assert list_photos() == sorted(SKIMAGE + OTHERS)


@pytest.mark.parametrize("name", SKIMAGE + OTHERS)
def test_every_photo_loads_as_rgb_uint8(name):
    photo = load_photo(name)
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert photo.shape[0] >= 100 and photo.shape[1] >= 100
    assert photo.max() > photo.min()  # not blank


def test_grayscale_photos_become_rgb_with_equal_channels():
    from skimage import data

    camera = load_photo("camera")
    np.testing.assert_array_equal(camera[..., 0], data.camera())
    np.testing.assert_array_equal(camera[..., 0], camera[..., 2])
    horse = load_photo("horse")  # a boolean silhouette in skimage
    assert set(np.unique(horse).tolist()) == {0, 255}


def test_sources_match_their_packages():
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]
    np.testing.assert_array_equal(load_photo("china"), china)
    assert load_photo("grace_hopper").shape == (600, 512, 3)


def test_load_photo_returns_a_fresh_copy():
    first = load_photo("coffee")
    first[:] = 0
    assert load_photo("coffee").max() > 0


def test_unknown_photo_names_it_lists_names_and_suggests():
    with pytest.raises(UnknownPhotoError, match=r"photo='chelsee' is not one of \['astronaut'.*did you mean 'chelsea'"):
        load_photo("chelsee")
    with pytest.raises(ValueError):  # UnknownPhotoError is a ValueError
        load_photo("eagle")  # skimage has it, but only through a download


def test_default_pair_is_chelsea_and_its_mirror():
    query, reference = default_pair()
    chelsea = load_photo("chelsea")
    np.testing.assert_array_equal(query, chelsea)
    np.testing.assert_array_equal(reference, chelsea[:, ::-1])


# ----------------------------------------------------------------------------- stereo


def _gray(image):
    return image.astype(np.float64).mean(axis=2)


def test_stereo_disparity_is_for_the_left_image_and_points_left():
    left, right, disparity = stereo_motorcycle()
    assert left.shape == right.shape == (500, 741, 3) and disparity.shape == (500, 741)
    assert disparity.dtype == np.float32
    assert np.isnan(disparity).sum() > 1000 and not np.isinf(disparity).any()
    assert np.nanmin(disparity) > 0

    gl, gr = _gray(left), _gray(right)
    k = 5
    found, claimed, sad_minus, sad_plus = [], [], [], []
    for r in range(30, 470, 29):
        for c in range(120, 640, 37):
            d = disparity[r, c]
            patch = gl[r - k:r + k + 1, c - k:c + k + 1]
            if not np.isfinite(d) or patch.std() < 20:  # textured points with ground truth only
                continue
            errors = [np.abs(gr[r - k:r + k + 1, c - s - k:c - s + k + 1] - patch).mean()
                      for s in range(0, 90)]
            found.append(int(np.argmin(errors)))
            claimed.append(d)
            for sign, store in ((-1, sad_minus), (+1, sad_plus)):
                c2 = int(round(c + sign * d))
                store.append(np.abs(gr[r - k:r + k + 1, c2 - k:c2 + k + 1] - patch).mean())
    found, claimed = np.array(found), np.array(claimed)
    assert len(found) >= 40
    # Left (r, c) <-> right (r, c - d): patch matching finds the claimed shift.
    close = np.abs(found - claimed) <= 1.5
    assert close.mean() >= 0.75, (close.mean(), np.median(np.abs(found - claimed)))
    # ... and the opposite sign is far worse.
    assert np.mean(sad_minus) < 0.5 * np.mean(sad_plus)


def test_stereo_returns_copies():
    left, _, disparity = stereo_motorcycle()
    left[:] = 0
    disparity[:] = 0
    left2, _, disparity2 = stereo_motorcycle()
    assert left2.max() > 0 and np.nanmax(disparity2) > 0
    np.testing.assert_array_equal(load_photo("motorcycle_left"), left2)


# ----------------------------------------------------------------------------- views

DOTS = np.array([[30, 40], [60, 100], [90, 70], [45, 130], [70, 35]], dtype=float)


def _dot_image(h=120, w=160):
    image = np.zeros((h, w, 3), np.uint8)
    for r, c in DOTS.astype(int):
        image[r, c] = 255
    return image


def _centroids(view_image):
    g = _gray(view_image)
    g = g - np.median(g)
    mask = g > 2.0
    regions = regionprops(label(mask, connectivity=2), intensity_image=np.clip(g, 0, None))
    return np.array([reg.centroid_weighted for reg in regions]).reshape(-1, 2)


@pytest.mark.parametrize(
    "kind, params, tolerance",
    [
        ("mirror", {}, 0.5),
        ("crop_scale", {}, 0.5),
        ("crop_scale", {"box": (10, 20, 100, 120), "size": (50, 60)}, 0.5),  # shrinking
        ("crop_scale", {"box": (20.5, 15.25, 75, 125), "size": (150, 200)}, 0.5),  # sub-pixel box
        ("rotation", {}, 1.0),
        ("rotation", {"angle": -73.0, "centre": (50.0, 90.0)}, 1.0),
        ("perspective", {}, 1.0),
        ("perspective", {"seed": 3, "strength": 0.15}, 1.0),
        ("color", {}, 0.5),
    ],
)
def test_dots_land_where_map_points_says(kind, params, tolerance):
    image = _dot_image()
    before = image.copy()
    view = views(image, kind, **params)
    np.testing.assert_array_equal(image, before)  # input untouched
    rows, cols, valid = view.map_points(DOTS[:, 0], DOTS[:, 1])
    expected = np.stack([rows, cols], axis=1)[valid]
    found = _centroids(view.image)
    assert valid.sum() >= 4
    assert len(found) == len(expected)
    for point in expected:
        distance = np.min(np.hypot(*(found - point).T))
        assert distance <= tolerance, (kind, point, distance)


@pytest.mark.parametrize("kind", VIEW_KINDS)
def test_inverse_undoes_map_points(kind):
    view = views(load_photo("chelsea"), kind)
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 299, 50)
    cols = rng.uniform(0, 450, 50)
    r2, c2, valid = view.map_points(rows, cols)
    r3, c3, valid_back = view.inverse(r2, c2)
    np.testing.assert_allclose(r3, rows, atol=1e-9)
    np.testing.assert_allclose(c3, cols, atol=1e-9)
    np.testing.assert_array_equal(valid, valid_back)


def test_mirror_and_crop_formulas():
    image = np.zeros((4, 6, 3), np.uint8)
    image[1, 0] = (10, 20, 30)
    mirror = views(image, "mirror")
    assert mirror.image[1, 5].tolist() == [10, 20, 30]
    assert mirror.map_points(1, 0)[1] == 5.0
    # A crop box from edge 10 to 60 (rows) scaled x2: pixel centre 10 (edges 10..11) -> 0.5.
    crop = views(np.zeros((100, 200, 3), np.uint8), "crop_scale", box=(10, 20, 50, 100), size=(100, 200))
    r, c, valid = crop.map_points([10, 59, 5], [20, 119, 20])
    np.testing.assert_allclose(r, [0.5, 98.5, -9.5])
    np.testing.assert_allclose(c, [0.5, 198.5, 0.5])
    assert valid.tolist() == [True, True, False]  # row 5 lies above the box
    default = views(np.zeros((100, 200, 3), np.uint8), "crop_scale")
    assert default.params == {"box": (15.0, 30.0, 70.0, 140.0), "size": (100, 200)}


def test_rotation_direction_and_validity():
    view = views(np.zeros((101, 101, 3), np.uint8), "rotation", angle=90)
    # Counter-clockwise on screen: a point right of the centre moves up.
    r, c, valid = view.map_points(50, 80)
    assert (float(r), float(c)) == pytest.approx((20.0, 50.0))
    corner = views(np.zeros((100, 200, 3), np.uint8), "rotation", angle=30)
    assert not corner.map_points(0, 0)[2]  # a corner leaves the canvas


def test_rotation_equals_skimage_rotate():
    photo = load_photo("chelsea")
    view = views(photo, "rotation", angle=33)
    reference = rotate(photo.astype(float), 33, order=1, preserve_range=True, mode="constant")
    assert np.abs(view.image.astype(float) - np.round(reference)).max() <= 1


def test_crop_scale_upsampling_equals_pil_box_resize():
    photo = load_photo("chelsea")
    view = views(photo, "crop_scale", box=(40, 60, 150, 200), size=(300, 400))
    pil = Image.fromarray(photo).resize((400, 300), Image.Resampling.BILINEAR, box=(60, 40, 260, 190))
    assert np.abs(view.image.astype(int) - np.asarray(pil).astype(int)).max() <= 1


def test_perspective_corners_and_skimage_homography():
    photo = load_photo("chelsea")
    offsets = [[10, -5], [-8, 12], [4, 6], [-3, -9]]
    view = views(photo, "perspective", corner_offsets=offsets)
    h, w = photo.shape[:2]
    corners = np.array([[0, 0], [0, w - 1], [h - 1, w - 1], [h - 1, 0]], float)
    r, c, _ = view.map_points(corners[:, 0], corners[:, 1])
    np.testing.assert_allclose(np.stack([r, c], 1), corners + offsets, atol=1e-9)
    transform = ProjectiveTransform.from_estimate(corners[:, ::-1], (corners + offsets)[:, ::-1])
    reference = warp(photo.astype(float), transform.inverse, order=1, preserve_range=True)
    assert np.abs(view.image.astype(float) - np.round(reference)).max() <= 1
    again = views(photo, "perspective")
    np.testing.assert_array_equal(again.image, views(photo, "perspective", seed=0).image)
    assert not np.array_equal(again.image, views(photo, "perspective", seed=1).image)


def test_color_jitter_keeps_geometry_and_known_factors():
    photo = load_photo("coffee")
    view = views(photo, "color")
    np.testing.assert_array_equal(view.matrix, np.eye(3))
    assert view.image.shape == photo.shape and not np.array_equal(view.image, photo)
    same = views(photo, "color", brightness=1, contrast=1, saturation=1, hue=0)
    np.testing.assert_array_equal(same.image, photo)
    half = views(np.full((4, 4, 3), 200, np.uint8), "color", brightness=0.5, contrast=1,
                 saturation=1, hue=0)
    np.testing.assert_array_equal(half.image, 100)
    grey = views(photo, "color", brightness=1, contrast=1, saturation=0, hue=0).image.astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1


def test_views_accept_grayscale():
    view = views(np.zeros((5, 7), np.uint8), "mirror")
    assert view.image.shape == (5, 7, 3)


@pytest.mark.parametrize(
    "image, kind, params, message",
    [
        (np.zeros((8, 8, 3), np.uint8), "flip", {}, r"'flip'.*mirror"),
        (np.zeros((8, 8, 3), np.uint8), "rotation", {"degrees": 3}, r"\['degrees'\].*angle"),
        (np.zeros((8, 8, 3), np.uint8), "crop_scale", {"box": (0, 0, 10, 4)}, "inside the 8x8"),
        (np.zeros((8, 8, 3), np.uint8), "crop_scale", {"size": (0, 4)}, "size"),
        (np.zeros((8, 8, 3), np.uint8), "perspective", {"corner_offsets": np.zeros((3, 2))}, "corner_offsets"),
        (np.zeros((8, 8, 3), np.uint8), "perspective",
         {"corner_offsets": [[0, 0], [0, 0], [-7, -7], [0, 0]]}, "line"),
        (np.zeros((8, 8, 3), np.uint8), "color", {"brightness": -1}, "brightness"),
        (np.zeros((8, 8, 3), np.float32), "mirror", {}, "dtype"),
        (np.zeros((8, 8, 4), np.uint8), "mirror", {}, "shape"),
    ],
)
def test_views_reject_bad_input(image, kind, params, message):
    with pytest.raises(ValueError, match=message):
        views(image, kind, **params)


def test_datasets_import_only_numpy_pil_skimage_sklearn():
    import ast
    import pathlib
    import sys

    import simviz_widgets.datasets as datasets

    # matplotlib only for its bundled grace_hopper.jpg (matplotlib.cbook).
    allowed = {"numpy", "PIL", "skimage", "sklearn", "matplotlib"} | set(sys.stdlib_module_names)
    for path in pathlib.Path(datasets.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)
