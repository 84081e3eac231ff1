"""Synthetic attribute scenes: known shared attribute at known places, deterministic; the scene model."""

import numpy as np
import pytest
import torch

from simviz_widgets.datasets.synthetic import (
    ATTRIBUTE_GROUPS,
    SYNTHETIC_ATTRIBUTES,
    SceneObject,
    attribute_group,
    negative_pairs,
    random_scenes,
    render_scene,
    scene_pairs,
)


def test_pairs_share_exactly_one_value_and_its_masks():
    pairs = scene_pairs(40, seed=3)
    assert {p.shared for p in pairs} <= set(SYNTHETIC_ATTRIBUTES)
    for p in pairs:
        assert p.query.attributes & p.reference.attributes == {p.shared}
        for scene, mask in ((p.query, p.query_mask), (p.reference, p.reference_mask)):
            carriers = [m for o, m in zip(scene.objects, scene.object_masks) if p.shared in o.attributes]
            assert carriers and np.array_equal(mask, np.logical_or.reduce(carriers))
            assert mask.any() and not mask.all()
            # The mask pixels are the object's pixels: they differ from the grey background.
            assert np.abs(scene.image[mask].astype(int) - 128).max() > 40


def test_negative_pairs_share_nothing():
    for p in negative_pairs(20, seed=1):
        assert p.shared is None
        assert not (p.query.attributes & p.reference.attributes)
        assert not p.query_mask.any()


def test_deterministic_under_seed():
    a = scene_pairs(5, seed=7)
    b = scene_pairs(5, seed=7)
    c = scene_pairs(5, seed=8)
    assert all(np.array_equal(x.query.image, y.query.image) and x.shared == y.shared for x, y in zip(a, b))
    assert not all(np.array_equal(x.query.image, y.query.image) for x, y in zip(a, c))


def test_labels_follow_objects_and_groups():
    scene = random_scenes(1, seed=2)[0]
    labels = scene.labels
    assert labels.dtype == bool and labels.shape == (len(SYNTHETIC_ATTRIBUTES),)
    for group, values in ATTRIBUTE_GROUPS.items():
        present = {getattr(o, group) for o in scene.objects}
        assert {v for v in values if labels[SYNTHETIC_ATTRIBUTES.index(v)]} == present
    masks = scene.attribute_masks
    assert masks.shape == (len(SYNTHETIC_ATTRIBUTES), 64, 64)
    assert not masks[~labels].any() and all(m.any() for m in masks[labels])


def test_render_known_pixels():
    obj = SceneObject("red", "square", "plain", "large", (32.0, 32.0), 12.0)
    scene = render_scene([obj], size=64, rng=0)
    assert tuple(scene.image[32, 32]) == (215, 40, 40)
    assert scene.object_masks[0, 32, 32] and not scene.object_masks[0, 2, 2]
    # Half side 0.88 * 12 = 10.56 px around 32: pixel centres r + 0.5 = 21.5 .. 42.5, 22 per side.
    assert scene.object_masks[0].sum() == 22 * 22
    assert scene.object_masks[0, 21, 21] and not scene.object_masks[0, 20, 21]


def test_bad_input_errors():
    with pytest.raises(ValueError, match="n=0 must be >= 1"):
        scene_pairs(0)
    with pytest.raises(ValueError, match="size=16 must be >= 32"):
        scene_pairs(1, size=16)
    with pytest.raises(ValueError, match="attributes\\[0\\]='purple' is not one of"):
        scene_pairs(1, attributes=("purple",))
    with pytest.raises(ValueError, match="objects\\[0\\].colour='pink' is not one of"):
        render_scene([SceneObject("pink", "square", "plain", "large", (32.0, 32.0), 12.0)])
    with pytest.raises(ValueError, match="'nope'"):
        attribute_group("nope")


def test_scene_model_trains_and_round_trips(tmp_path):
    from simviz_widgets.models import load
    from simviz_widgets.models.synthetic import scene_batch, train_scene_model

    net, log = train_scene_model(steps=3, batch=4, pairs=20, width=16, dim=8, show_progress=False)
    assert len(log["losses"]) == 3 and all(np.isfinite(log["losses"]))
    path = tmp_path / "scenes.pt"
    torch.save(net.state_dict(), path)
    model = load("synthetic_scenes", weights=path)
    images = np.stack([p.query.image for p in scene_pairs(2, seed=0)])
    with torch.no_grad():
        expected = net(scene_batch(images))
    assert torch.allclose(model.embed(list(images)), expected, atol=1e-5)
    assert model.pooling.kind == "avg" and model.head_kind == "linear"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load("synthetic_scenes", weights=tmp_path / "missing.pt")
