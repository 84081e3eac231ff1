"""The face descriptor network (simviz_widgets.models.face_resnet): tfjs weight reading, the
network's shapes and blocks, agreement with face-api.js itself, known distances, and its
decomposition (exact at 2 x 2, any-layer default at 8 x 8)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from face_helpers import in_ci, require_face_data

import simviz_widgets as sv
from simviz_widgets.datasets.faces import (
    FACE_API_FOLDER,
    FaceDataMissingError,
    crop_face,
    face_crop_geometry,
    face_data_dir,
    list_faces,
    load_face,
)
from simviz_widgets.explain.decomposition import position_contributions
from simviz_widgets.models.face_resnet import (
    FACE_PREPROCESS,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    FaceResNet,
    FaceSimilarityModel,
    Residual,
)
from simviz_widgets.models.tfjs_weights import TfjsWeightsError, read_tfjs_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE = os.environ.get("SIMVIZ_NODE") or shutil.which("node") or "/usr/bin/node"


def _write_tfjs(folder: Path, specs: list[dict], payload: bytes) -> Path:
    (folder / "w.bin").write_bytes(payload)
    manifest = folder / "m.json"
    manifest.write_text(json.dumps([{"paths": ["w.bin"], "weights": specs}]))
    return manifest


# ------------------------------------------------------------------------------------------------
# tfjs weights

def test_tfjs_reader_dequantises_in_manifest_order(tmp_path):
    q = np.array([0, 1, 2, 200, 254, 255], np.uint8)
    f = np.array([1.5, -2.25], np.float32)
    i = np.array([7], np.int32)
    specs = [
        {"name": "q", "shape": [2, 3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -3.0}},
        {"name": "f", "shape": [2], "dtype": "float32"},
        {"name": "i", "shape": [1], "dtype": "int32"},
    ]
    manifest = _write_tfjs(tmp_path, specs, q.tobytes() + f.astype("<f4").tobytes() + i.astype("<i4").tobytes())
    out = read_tfjs_weights(manifest)
    assert list(out) == ["q", "f", "i"]
    # value = q * scale + min
    np.testing.assert_array_equal(out["q"], [[-3.0, -2.5, -2.0], [97.0, 124.0, 124.5]])
    np.testing.assert_array_equal(out["f"], f)
    assert out["i"].dtype == np.int32 and out["i"].tolist() == [7]

    _write_tfjs(tmp_path, specs, q.tobytes() + f.tobytes())  # the int32 tensor is missing
    with pytest.raises(TfjsWeightsError, match="truncated"):
        read_tfjs_weights(manifest)
    _write_tfjs(tmp_path, specs, q.tobytes() + f.tobytes() + i.tobytes() + b"\0")
    with pytest.raises(TfjsWeightsError, match="describes"):
        read_tfjs_weights(manifest)
    specs[0]["quantization"]["dtype"] = "float16"
    _write_tfjs(tmp_path, specs, q.tobytes() + f.tobytes() + i.tobytes())
    with pytest.raises(TfjsWeightsError, match="quantisation"):
        read_tfjs_weights(manifest)


def test_face_api_weights_117_tensors_and_a_quantised_one_read_by_hand():
    require_face_data()
    folder = face_data_dir() / FACE_API_FOLDER
    manifest = json.loads((folder / MANIFEST_FILE).read_text())[0]["weights"]
    tensors = read_tfjs_weights(folder / MANIFEST_FILE)
    assert len(tensors) == 117 and list(tensors) == [w["name"] for w in manifest]
    assert sum("quantization" in w for w in manifest) == 109
    # conv128_1/conv1/conv/filters straight from the file: its offset is the sum of the sizes before it.
    name = "conv128_1/conv1/conv/filters"
    k = [w["name"] for w in manifest].index(name)
    offset = sum(int(np.prod(w["shape"])) * (1 if "quantization" in w else 4) for w in manifest[:k])
    spec = manifest[k]
    count = int(np.prod(spec["shape"]))
    with open(folder / WEIGHTS_FILE, "rb") as f:
        f.seek(offset)
        raw = np.frombuffer(f.read(count), np.uint8).reshape(spec["shape"])
    scale, low = spec["quantization"]["scale"], spec["quantization"]["min"]
    expected = raw.astype(np.float64) * scale + low
    np.testing.assert_allclose(tensors[name], expected, rtol=0, atol=1e-7)
    # In the network: [kh, kw, in, out] -> [out, in, kh, kw]; fc [256, 128] -> its transpose.
    net = FaceResNet().load_tfjs(tensors)
    np.testing.assert_array_equal(net.conv128_1.conv1.conv.weight.detach().numpy(),
                                  np.transpose(tensors[name], (3, 2, 0, 1)))
    np.testing.assert_array_equal(net.fc.weight.detach().numpy(), tensors["fc"].T)


def test_load_tfjs_refuses_a_wrong_set_of_tensors():
    net = FaceResNet()
    state = {"conv32_down/conv/filters": np.zeros((7, 7, 3, 32), np.float32)}
    with pytest.raises(ValueError, match="unset"):
        net.load_tfjs(state)


# ------------------------------------------------------------------------------------------------
# the network

def test_shapes_per_stage():
    net = FaceResNet().eval()
    shapes = {}
    names = ["conv32_down", "pool", "conv32_3", "conv64_down", "conv64_3", "conv128_down", "conv128_2",
             "conv256_down", "conv256_2", "conv256_down_out"]
    for n in names:
        getattr(net, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 150, 150))
    assert out.shape == (2, 128)
    assert shapes == {
        "conv32_down": (32, 72, 72), "pool": (32, 35, 35), "conv32_3": (32, 35, 35),
        "conv64_down": (64, 17, 17), "conv64_3": (64, 17, 17), "conv128_down": (128, 8, 8),
        "conv128_2": (128, 8, 8), "conv256_down": (256, 4, 4), "conv256_2": (256, 4, 4),
        "conv256_down_out": (256, 2, 2),
    }


def test_down_block_pools_the_shortcut_widens_it_and_pads_the_conv_branch():
    # 8 x 8 input: the stride-2 conv without padding gives 3 x 3, the 2 x 2 pool 4 x 4. Conv branch
    # set to the constant 1 (zero filters, scale 0, scale bias 1), so the block outputs
    # relu(pool(x) (+ zero channel) + [1 on the top-left 3 x 3, 0 on the added row and column]).
    block = Residual(1, 2, down=True).eval()
    with torch.no_grad():
        for layer in (block.conv1, block.conv2):
            layer.conv.weight.zero_()
            layer.conv.bias.zero_()
            layer.scale.weight.zero_()
        block.conv2.scale.bias.fill_(1.0)
        x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
        out = block(x)[0]
    pooled = x[0, 0].reshape(4, 2, 4, 2).mean(dim=(1, 3))  # 2 x 2 means by hand
    ones = torch.zeros(4, 4)
    ones[:3, :3] = 1.0
    torch.testing.assert_close(out[0], pooled + ones)
    torch.testing.assert_close(out[1], ones)  # the zero channel appended to the shortcut


def _random_face_model() -> FaceSimilarityModel:
    torch.manual_seed(0)
    return FaceSimilarityModel.wrap(FaceResNet().eval(), layer=None, metric="euclidean", preprocess=FACE_PREPROCESS,
                                    name="face_resnet")


def test_prepare_crops_like_crop_face_and_keeps_the_geometry():
    model = _random_face_model()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (90, 61, 3), dtype=np.uint8)
    prepared = model.prepare(photo)
    np.testing.assert_array_equal(prepared.display, crop_face(photo))
    mean = torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(prepared.display.astype(np.float32)).permute(2, 0, 1)[None] - mean) / 255
    torch.testing.assert_close(prepared.tensor, expected)
    # display (r, c) samples the source at origin + (r, c) * step (black padding before: 14 columns)
    geo = face_crop_geometry(photo.shape, None)
    assert geo.pad_before == (0, 14)
    rows, cols = prepared.to_source(np.array([0.0, 75.0, 149.0]), np.array([0.0, 75.0, 149.0]))
    np.testing.assert_allclose(rows, np.array([0.0, 75.0, 149.0]) * 90 / 150)
    np.testing.assert_allclose(cols, np.array([0.0, 75.0, 149.0]) * 90 / 150 - 14)
    # A 150 x 150 crop passes unchanged.
    crop = crop_face(photo)
    np.testing.assert_array_equal(model.prepare(crop).display, crop)


def test_copies_and_other_layers_keep_the_face_crop():
    model = _random_face_model()
    photo = np.random.default_rng(1).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    for other in (model.copy(), model.at_layer("conv128_2"), model.at_resolution(4)):
        assert isinstance(other, FaceSimilarityModel)
        np.testing.assert_array_equal(other.prepare(photo).display, crop_face(photo))
    assert model.at_resolution(8).decompose_layer == "conv128_2"


def test_missing_weights_name_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMVIZ_DATA", str(tmp_path))
    with pytest.raises(FaceDataMissingError, match="bash scripts/install_face_data.sh"):
        sv.load_model("face_resnet")


# ------------------------------------------------------------------------------------------------
# the real weights

@pytest.fixture(scope="module")
def exact_model():
    require_face_data()
    return sv.load_model("face_resnet", layer=None)


def _face_api_reference(tmp_path, pictures: list[np.ndarray]) -> list[dict]:
    if not (os.path.isfile(NODE) and os.access(NODE, os.X_OK)):
        if in_ci():
            pytest.fail(f"CI=true but node is missing ({NODE!r}) for the face-api.js reference", pytrace=False)
        pytest.skip(f"the face-api.js reference needs node (looked for {NODE!r})")
    request = []
    for k, picture in enumerate(pictures):
        path = tmp_path / f"picture{k}.f32"
        picture.astype("<f4").tofile(path)
        request.append({"file": str(path), "rows": picture.shape[0], "cols": picture.shape[1]})
    (tmp_path / "request.json").write_text(json.dumps(request))
    result = subprocess.run(
        [NODE, str(REPO_ROOT / "tests" / "face_api_reference.mjs"), str(face_data_dir() / FACE_API_FOLDER),
         str(tmp_path / "request.json"), str(tmp_path / "reply.json")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((tmp_path / "reply.json").read_text())


def test_port_matches_face_api_js(exact_model, tmp_path):
    """face-api.js's own code (TensorFlow.js, CPU) on the same pictures: its crop (pad + resize) and
    descriptors. Our crop rounds to uint8 (at most half a grey level); on the same crop the
    descriptors agree to float32 round-off."""
    info = list_faces()
    obama2 = load_face("obama2")
    top, left, bottom, right = info["obama2"]["box"]
    region = obama2[top:bottom, left:right]  # square
    partial = load_face("obama_partial_face")
    pt, pl, pb, pr = face_crop_geometry(partial.shape, info["obama_partial_face"]["box"]).box
    cut = partial[pt:pb, pl:pr]  # 274 x 213: padded to a square
    crop = load_face("obama", crop=True)
    reply = _face_api_reference(tmp_path, [crop, region, cut])
    ours = exact_model.embed([crop, crop_face(region), crop_face(cut)]).double().numpy()
    theirs = np.array([r["descriptor"] for r in reply])
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=1e-5)  # identical input
    for k, picture in ((1, region), (2, cut)):
        js_input = np.array(reply[k]["input"]).reshape(150, 150, 3)
        assert np.abs(crop_face(picture) - js_input).max() <= 0.5 + 1e-4
        assert np.linalg.norm(ours[k] - theirs[k]) < 0.02  # the rounding's effect, vs thresholds ~0.6


def test_distances_same_person_and_different_people(exact_model):
    names = ["obama", "obama2", "obama3", "obama_partial_face", "obama_partial_face2", "biden"]
    g = exact_model.embed([load_face(n, crop=True) for n in names]).double()
    d = {(a, b): float((g[i] - g[j]).norm()) for i, a in enumerate(names) for j, b in enumerate(names)}
    whole = ["obama", "obama2", "obama3"]
    same_whole = max(d[a, b] for a in whole for b in whole)
    same_partial = max(d[a, b] for a in names[:5] for b in names[3:5])
    different = min(d[a, "biden"] for a in names[:5])
    # measured: 0.418, 0.585, 0.723 (docs/faces.md has the table); dlib's threshold is 0.6
    assert same_whole <= 0.56, d
    assert same_partial <= 0.6, d
    assert different >= 0.69, d
    # the similarity is minus the squared distance
    assert exact_model.similarity(load_face("obama", crop=True), load_face("biden", crop=True)) == \
        pytest.approx(-d["obama", "biden"] ** 2, rel=1e-5)


def test_exact_decomposition_sums_to_the_score(exact_model):
    a, b = load_face("obama", crop=True), load_face("obama2", crop=True)
    e = sv.explain(exact_model, a, b, method="decomposition")
    assert e.query_map.shape == (2, 2) and e.metric == "euclidean"
    with torch.no_grad():
        ga, gb = (exact_model.module(exact_model.prepare(x).tensor) for x in (a, b))
    score = -float(((ga - gb) ** 2).sum())
    assert e.score == pytest.approx(score, rel=1e-5)
    assert float(e.query_map.sum()) == pytest.approx(e.score, rel=1e-5, abs=1e-6)
    assert float(e.reference_map.sum()) == pytest.approx(e.score, rel=1e-5, abs=1e-6)
    p2p = e.point_to_point
    full = p2p.scale * (p2p.query_factors @ p2p.reference_factors.T)  # every pair of positions
    assert full.shape == (4, 4) and float(full.sum()) == pytest.approx(score, rel=1e-5)
    assert e.completeness_error < 1e-6


def test_default_is_the_8x8_stage_with_its_completeness_reported():
    require_face_data()
    model = sv.load_model("face_resnet")
    assert model.decompose_layer == "conv128_2" and model.describe()["mode"] == "gradient x input"
    a, b = load_face("obama", crop=True), load_face("obama3", crop=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = sv.explain(model, a, b, method="decomposition", show_progress=False)
    assert e.query_map.shape == (8, 8) and e.point_to_point.query_grid == (8, 8)
    # The maps sum to the score (the first-order residual is spread over positions) ...
    assert e.completeness_error < 1e-6
    assert float(e.query_map.sum()) == pytest.approx(e.score, rel=1e-5)
    exact = sv.explain(model.at_layer(None), a, b, method="decomposition")
    assert e.score == pytest.approx(exact.score, rel=1e-5)
    # ... because the later biases are split over the cells (bias_split="spatial", the face model's
    # default): the network is piecewise linear after conv128_2, so nothing is left to spread and no
    # first-order warning is given.
    ratios = e.info["residual_ratio"]
    assert e.info["bias_split"] == "spatial"
    assert set(ratios) == {"query", "reference"} and all(r < 1e-5 for r in ratios.values())
    assert not any("first-order" in str(w.message) for w in caught)
    # Spread evenly (plain gradient x input), the biases are larger than the first-order part
    # (|g - sum e_i| / |g| about 1.1-1.2), with the warning saying so; the score is the same.
    with pytest.warns(UserWarning, match="first-order"):
        even = sv.explain(model, a, b, method="decomposition", bias_split="even", show_progress=False)
    assert all(0.5 < r < 5 for r in even.info["residual_ratio"].values())
    assert even.score == pytest.approx(e.score, rel=1e-6)
    # position_contributions follows the model's split by default, as explain() does.
    x = model.prepare(a).tensor
    assert position_contributions(model, x, show_progress=False)["residual_ratio"] < 1e-5
    assert position_contributions(model, x, bias="even", show_progress=False)["residual_ratio"] > 0.5


def test_each_load_has_its_own_network():
    """A cached network was shared by every load: one model's .half() reached the others."""
    require_face_data()
    a, b = sv.load_model("face_resnet"), sv.load_model("face_resnet")
    assert a.module is not b.module
    a.module.half()
    assert b.dtype == torch.float32 and sv.load_model("face_resnet").dtype == torch.float32


def test_a_malformed_manifest_is_named(tmp_path):
    """A manifest entry without 'paths' (or not JSON at all) raised a bare KeyError / JSONDecodeError."""
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps([{"weights": []}]))
    with pytest.raises(TfjsWeightsError, match="malformed weight group.*'paths'"):
        read_tfjs_weights(bad)
    bad.write_text("{not json")
    with pytest.raises(TfjsWeightsError, match="not a JSON weights manifest"):
        read_tfjs_weights(bad)
