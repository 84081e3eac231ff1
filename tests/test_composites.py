"""Shared-object composites: ground truth for localisation metrics on real photos."""

import numpy as np
import pytest
from PIL import Image

from simviz_widgets.datasets import (
    COMPOSITE_BACKGROUNDS,
    SHARED_OBJECTS,
    background_crop,
    list_photos,
    load_photo,
    shared_object_pairs,
)


@pytest.fixture(scope="module")
def pairs():
    return shared_object_pairs(n=10, seed=3, size=96)


def box_mask(box, size):
    top, left, h, w = box
    mask = np.zeros((size, size), bool)
    mask[top:top + h, left:left + w] = True
    return mask


def independent_patch(object_name, h, w):
    """The object's crop resized with PIL directly (not through the module's helper)."""
    photo, (top, left, bh, bw) = SHARED_OBJECTS[object_name]
    crop = Image.fromarray(load_photo(photo)).crop((left, top, left + bw, top + bh))
    return np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)


def test_objects_and_backgrounds_are_bundled_photos():
    photos = set(list_photos())
    assert {photo for photo, _ in SHARED_OBJECTS.values()} <= photos
    assert set(COMPOSITE_BACKGROUNDS) <= photos
    for name, (photo, (top, left, h, w)) in SHARED_OBJECTS.items():
        H, W = load_photo(photo).shape[:2]
        assert 0 <= top and 0 <= left and top + h <= H and left + w <= W, name


def test_masks_are_where_the_object_is(pairs):
    for p in pairs:
        assert p.query.shape == p.reference.shape == (96, 96, 3) and p.query.dtype == np.uint8
        sides = ((p.query, p.query_mask, p.query_box), (p.reference, p.reference_mask, p.reference_box))
        for image, mask, box in sides:
            np.testing.assert_array_equal(mask, box_mask(box, 96))
            top, left, h, w = box
            pasted = image[top:top + h, left:left + w].astype(np.int16)
            # PIL's resize(box=) and crop-then-resize agree to rounding at the crop's edges.
            assert np.abs(pasted - independent_patch(p.object_name, h, w)).mean() < 2.0
            margin = p.params["margin"]
            assert margin <= top and top + h <= 96 - margin and margin <= left and left + w <= 96 - margin


def test_outside_the_mask_is_the_background_and_the_object_differs_from_it(pairs):
    for p in pairs:
        assert p.query_background != p.reference_background
        for image, mask, bg, box in (
            (p.query, p.query_mask, p.query_background, p.params["query_background_box"]),
            (p.reference, p.reference_mask, p.reference_background, p.params["reference_background_box"]),
        ):
            background = background_crop(bg, box, 96)
            np.testing.assert_array_equal(image[~mask], background[~mask])
            covered = np.abs(image[mask].astype(np.int16) - background[mask].astype(np.int16)).mean()
            assert covered > 15, (p.name, covered)
        # The two backgrounds differ where neither image shows the object.
        outside = ~p.query_mask & ~p.reference_mask
        assert np.abs(p.query[outside].astype(np.int16) - p.reference[outside].astype(np.int16)).mean() > 15


def test_mapping_sends_the_object_onto_itself(pairs):
    for p in pairs:
        top, left, h, w = p.query_box
        rows, cols = np.mgrid[top:top + h, left:left + w]
        tr, tc, valid = p.mapping(rows, cols)
        assert valid.all()
        rt, rl, rh, rw = p.reference_box
        assert tr.min() >= rt - 0.5 and tr.max() <= rt + rh - 0.5
        assert tc.min() >= rl - 0.5 and tc.max() <= rl + rw - 0.5
        # Corners: the top-left pixel edge maps to the top-left edge.
        r0, c0, _ = p.mapping(top - 0.5, left - 0.5)
        assert (float(r0), float(c0)) == pytest.approx((rt - 0.5, rl - 0.5))
        # Same object point, same colour (up to resampling at two scales).
        ri = np.clip(np.round(tr).astype(int), 0, 95)
        ci = np.clip(np.round(tc).astype(int), 0, 95)
        diff = np.abs(p.query[rows, cols].astype(np.int16) - p.reference[ri, ci].astype(np.int16)).mean()
        assert diff < 25, (p.name, diff)
        # Outside the query's box nothing is valid.
        _, _, outside = p.mapping(np.array([top - 2.0, top]), np.array([left, left + w + 1.0]))
        assert not outside.any()


def test_deterministic_under_seed_and_cycles_objects():
    a = shared_object_pairs(n=3, seed=7, size=64)
    b = shared_object_pairs(n=3, seed=7, size=64)
    c = shared_object_pairs(n=3, seed=8, size=64)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.query, y.query)
        np.testing.assert_array_equal(x.reference, y.reference)
        assert x.query_box == y.query_box
    assert any(x.query_box != z.query_box or not np.array_equal(x.query, z.query) for x, z in zip(a, c))
    names = [p.object_name for p in shared_object_pairs(n=len(SHARED_OBJECTS) + 1, size=32)]
    assert names[:-1] == list(SHARED_OBJECTS) and names[-1] == names[0]


def test_default_size_matches_the_default_model_input():
    p = shared_object_pairs(n=1)[0]
    assert p.query.shape == (224, 224, 3) and p.params["margin"] == 14


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n=0 must be >= 1"):
        shared_object_pairs(n=0)
    with pytest.raises(ValueError, match="objects\\[0\\]='unicorn' is not one of"):
        shared_object_pairs(n=1, objects=["unicorn"])
    with pytest.raises(ValueError, match="at least two different"):
        shared_object_pairs(n=1, backgrounds=["brick", "brick"])
    with pytest.raises(ValueError, match="scale"):
        shared_object_pairs(n=1, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="size"):
        shared_object_pairs(n=1, size=8)
