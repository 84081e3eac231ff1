"""Gallery building: folders, lists and datasets; the cache (reused, partly rebuilt when items change,
rebuilt when the weights change, memory-mapped when large); embeddings computed elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets import random_scenes
from simviz_widgets.retrieval import Gallery, demo_gallery, demo_items
from simviz_widgets.retrieval import cache as cache_files


@pytest.fixture(scope="module")
def model():
    return sv.load_model("tiny_test")


@pytest.fixture(scope="module")
def scenes():
    return [s.image for s in random_scenes(6, seed=5)]


@pytest.fixture
def folder(tmp_path, scenes):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for k, image in enumerate(scenes[:4]):
        Image.fromarray(image).save(root / f"scene{k}.png")
    Image.fromarray(scenes[4]).save(root / "sub" / "deeper.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_gallery_lists_images_recursively_and_embeds_like_the_model(model, folder):
    gallery = Gallery.build(model, folder, show_progress=False)
    assert gallery.names == ["scene0.png", "scene1.png", "scene2.png", "scene3.png", "sub/deeper.jpg"]
    assert gallery.embeddings.dtype == np.float32 and gallery.embeddings.shape[0] == 5
    for k, path in enumerate(gallery.items):
        expected = model.embed(path)[0].numpy()
        np.testing.assert_allclose(gallery.embeddings[k], expected, rtol=1e-5, atol=1e-6)
    assert gallery.image(1).shape == (64, 64, 3) and gallery.thumbnail(1, size=24).shape == (24, 24, 3)


def test_batches_give_the_same_embeddings_as_one_at_a_time(model, scenes):
    batched = Gallery.build(model, scenes, batch_size=4, show_progress=False)
    single = np.concatenate([model.embed(s).numpy() for s in scenes])
    np.testing.assert_allclose(batched.embeddings, single, rtol=1e-5, atol=1e-6)


def test_a_dataset_of_image_label_pairs_gives_labels(model, scenes):
    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, k):
            return torch.from_numpy(scenes[k]).permute(2, 0, 1), f"label {k}"

    gallery = Gallery.build(model, Pairs(), show_progress=False)
    assert gallery.labels == ["label 0", "label 1", "label 2"]
    np.testing.assert_array_equal(gallery.image(2), scenes[2])
    assert gallery.search(scenes[1], k=1).indices[0] == 1


def test_cache_is_reused_rebuilt_for_changed_items_and_for_changed_weights(model, folder, tmp_path, scenes):
    cache = tmp_path / "cache"
    first = Gallery.build(model, folder, cache=cache, show_progress=False)
    assert first.cache_info["embedded"] == 5 and first.cache_info["reason"] == "no cache yet"
    again = Gallery.build(model, folder, cache=cache, show_progress=False)
    assert again.cache_info == dict(first.cache_info, reused=5, embedded=0, reason="up to date")
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    # one file edited: that item alone is embedded again, and its row changes
    Image.fromarray(scenes[5]).save(folder / "scene2.png")
    edited = Gallery.build(model, folder, cache=cache, show_progress=False)
    assert (edited.cache_info["reused"], edited.cache_info["embedded"]) == (4, 1)
    np.testing.assert_allclose(edited.embeddings[2], model.embed(scenes[5])[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.delete(edited.embeddings, 2, 0), np.delete(first.embeddings, 2, 0))
    # retrained weights: the same file name, a stale record, everything embedded again
    retrained = model.copy(transform=lambda module, head: torch.nn.init.normal_(module.head.weight, std=0.1))
    stale = Gallery.build(retrained, folder, cache=cache, show_progress=False)
    assert stale.cache_info["embedded"] == 5 and stale.cache_info["reason"] == "the model's weights changed"
    assert stale.cache_info["path"] == edited.cache_info["path"]  # the same record, rewritten
    assert sorted(p.name for p in cache.glob("*.npy")) == [Path(stale.cache_info["rows"]).name]  # old rows gone
    assert not np.allclose(stale.embeddings, edited.embeddings)
    # another preprocessing is another model: its own file
    other = sv.SimilarityModel.wrap(model.module, preprocess=sv.PreprocessConfig(input_size=(48, 48),
                                                                                resize_short=48))
    assert Gallery.build(other, folder, cache=cache, show_progress=False).cache_info["path"] != stale.cache_info["path"]


def test_an_interrupted_build_leaves_the_previous_cache_whole(model, scenes, tmp_path, monkeypatch):
    first = Gallery.build(model, scenes, cache=tmp_path, show_progress=False)
    retrained = model.copy(transform=lambda module, head: torch.nn.init.normal_(module.head.weight, std=0.1))

    real_replace = cache_files.os.replace

    def killed(src, dst):  # the process dies once the rows are on disk, as the record would be written
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(cache_files.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        Gallery.build(retrained, scenes, cache=tmp_path, show_progress=False)
    monkeypatch.undo()
    again = Gallery.build(model, scenes, cache=tmp_path, show_progress=False)
    assert again.cache_info["reason"] == "up to date"
    np.testing.assert_array_equal(again.embeddings, first.embeddings)  # its own rows, not the retrained ones


def test_builds_running_at_once_never_delete_each_others_rows(tmp_path, monkeypatch):
    # two builds of one large gallery (rows memory-mapped on disk as they are filled): B starts
    # filling its rows, A commits, then B commits
    monkeypatch.setattr(cache_files, "MMAP_BYTES", 0)
    rows_in_b, part_b = cache_files.open_rows(tmp_path, "net", 3, 2)
    rows_in_a, part_a = cache_files.open_rows(tmp_path, "net", 3, 2)
    rows_in_a[:], rows_in_b[:] = 1, 2
    _, rows_a = cache_files.commit_cache(tmp_path, "net", rows_in_a, part_a, {"who": "a"})
    assert part_b.exists()  # A's commit left B's rows in progress alone
    loaded, rows_b = cache_files.commit_cache(tmp_path, "net", rows_in_b, part_b, {"who": "b"})
    assert not rows_a.exists() and rows_b.exists()  # B's record replaced A's: A's rows go
    assert json.loads((tmp_path / "net.json").read_text())["rows"] == rows_b.name
    np.testing.assert_array_equal(loaded, np.full((3, 2), 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["net.json", rows_b.name])


def test_dataset_entries_that_are_paths_are_fingerprinted_by_their_file(model, folder, scenes, tmp_path):
    paths = sorted(str(p) for p in folder.glob("*.png"))

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, k):
            return paths[k]

    Gallery.build(model, Files(), cache=tmp_path, show_progress=False)
    Image.fromarray(scenes[5]).save(paths[1])
    rebuilt = Gallery.build(model, Files(), cache=tmp_path, show_progress=False)
    assert (rebuilt.cache_info["reused"], rebuilt.cache_info["embedded"]) == (len(paths) - 1, 1)


def test_in_memory_items_are_fingerprinted_by_content(model, scenes, tmp_path):
    images = [s.copy() for s in scenes[:3]]
    Gallery.build(model, images, cache=tmp_path, show_progress=False)
    images[1][:8] = 0
    rebuilt = Gallery.build(model, images, cache=tmp_path, show_progress=False)
    assert (rebuilt.cache_info["reused"], rebuilt.cache_info["embedded"]) == (2, 1)


def test_large_caches_are_memory_mapped_and_search_streams_them(model, scenes, tmp_path, monkeypatch):
    small = Gallery.build(model, scenes, show_progress=False)
    monkeypatch.setattr(cache_files, "MMAP_BYTES", 64)
    mapped = Gallery.build(model, scenes, cache=tmp_path, show_progress=False)
    assert isinstance(mapped.embeddings, np.memmap)
    q_small, q_mapped = small.query(scenes[3]), mapped.query(scenes[3])
    np.testing.assert_allclose(q_mapped.scores((0, 0, 32, 64)), q_small.scores((0, 0, 32, 64)), rtol=1e-5)
    assert mapped.search(scenes[3], k=2).indices.tolist() == small.search(scenes[3], k=2).indices.tolist()
    assert isinstance(Gallery.build(model, scenes, cache=tmp_path, show_progress=False).embeddings, np.memmap)


def test_from_embeddings_copies_and_checks(model, scenes):
    embeddings = model.embed(list(scenes)).numpy().astype(np.float64)
    before = embeddings.copy()
    gallery = Gallery.from_embeddings(model, embeddings, scenes, names=list("abcdef"))
    gallery.embeddings[0] = 0
    np.testing.assert_array_equal(embeddings, before)  # the user's array is not touched
    assert gallery.search(scenes[4], k=1).names == ["e"]
    with pytest.raises(InputError, match="6 rows and items 5 entries"):
        Gallery.from_embeddings(model, embeddings, scenes[:5])
    with pytest.raises(InputError, match="model 'tiny_test' embeds in"):
        Gallery.from_embeddings(model, embeddings[:, :3], scenes)
    with pytest.raises(InputError, match="expected an .N, D. array"):
        Gallery.from_embeddings(model, embeddings[0], scenes[:1])
    bad = embeddings.copy()
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="finite"):
        Gallery.from_embeddings(model, bad, scenes)


@pytest.mark.parametrize("images, error, match", [
    ([], InputError, "empty list"),
    (42, InputTypeError, "expected a folder path, a list of images or a dataset"),
    ("/no/such/folder", InputError, "is not a folder"),
])
def test_bad_image_collections_are_refused(model, images, error, match):
    with pytest.raises(error, match=match):
        Gallery.build(model, images, show_progress=False)


def test_bad_options_are_refused(model, scenes, tmp_path):
    with pytest.raises(InputError, match="names has 2 entries"):
        Gallery.build(model, scenes, names=["a", "b"], show_progress=False)
    with pytest.raises(InputTypeError, match="cache"):
        Gallery.build(model, scenes, cache=1, show_progress=False)
    with pytest.raises(InputTypeError, match="show_progress"):
        Gallery.build(model, scenes, show_progress=1)
    with pytest.raises(InputError, match="gallery index"):
        Gallery.build(model, scenes, show_progress=False).image(6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image file"):
        Gallery.build(model, tmp_path / "empty", show_progress=False)


def test_demo_scene_gallery_labels_name_each_objects_attributes():
    images, names, labels = demo_items("scenes", count=4, seed=2)
    scenes = random_scenes(4, seed=2, size=96)
    assert [tuple(" ".join(o.attributes) for o in s.objects) for s in scenes] == labels
    np.testing.assert_array_equal(images[3], scenes[3].image)
    assert names[0].startswith("scene 0: ") and len(names) == 4
    photos, photo_names, photo_labels = demo_items("photos")
    assert photo_names[:2] == ["astronaut", "astronaut (mirror)"] and photo_labels[4] == "astronaut"
    assert len(photos) == 5 * len(set(photo_labels))
    with pytest.raises(InputError, match="demo gallery"):
        demo_items("cats")


def test_face_gallery_finds_the_same_person_first():
    from face_helpers import require_face_data

    from simviz_widgets.datasets import list_faces

    require_face_data()
    gallery = demo_gallery("faces", sv.load_model("face_resnet"), show_progress=False)
    people = gallery.labels
    assert len(gallery) == sum(len(info["boxes"]) for info in list_faces().values())  # every face
    for index, person in enumerate(people):
        if person == "Barack Obama":  # five photos of him, partial faces included
            best = gallery.search(gallery.image(index), k=1, exclude=[index]).indices[0]
            assert people[best] == "Barack Obama", gallery.names[index]
