"""Attribute explanations (SANE): predictor, saliency term, concept prior, ranking, user folders, panel."""

import math

import numpy as np
import pytest
import torch

from simviz_widgets.adapters import SimilarityModel
from simviz_widgets.attributes import (
    AttributeData,
    AttributePredictor,
    attributes_from_folders,
    decomposition_maps,
    explain_attributes,
    fit_attribute_predictor,
    fit_concept_vectors,
    saliency_distance,
    saliency_distribution,
    synthetic_attribute_data,
)
from simviz_widgets.datasets.synthetic import SYNTHETIC_ATTRIBUTES, scene_pairs
from simviz_widgets.explain import explain
from simviz_widgets.models import load
from simviz_widgets.models.synthetic import SCENE_PREPROCESS, SceneEmbeddingNet


@pytest.fixture(scope="module")
def scene_model():
    net = SceneEmbeddingNet(width=16, dim=8, seed=1).eval()
    return SimilarityModel.wrap(net, preprocess=SCENE_PREPROCESS, name="scenes_random")


@pytest.fixture(scope="module")
def small_data():
    return synthetic_attribute_data(scene_pairs(24, seed=4))


def _colour_image(blocks, size=32):
    """Black image with coloured 8x8 blocks: blocks = [(row, col, (r, g, b))] in 8-px units."""
    img = np.zeros((size, size, 3), np.uint8)
    for r, c, rgb in blocks:
        img[8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = rgb
    return img


def _rgb_predictor():
    """Hand-built: attribute k's map = 10 * (channel k's cell mean) - 3, for the mean_color model."""
    pred = AttributePredictor(("red", "green", "blue"), 3, pooling="max")
    with torch.no_grad():
        pred.conv.weight.zero_()
        for k in range(3):
            pred.conv.weight[k, k] = 10.0
        pred.conv.bias.fill_(-3.0)
    return pred.eval()


def test_batched_decomposition_maps_equal_explain(scene_model):
    pair = scene_pairs(2, seed=9)[1]
    xq = scene_model.prepare(pair.query.image).tensor
    xr = scene_model.prepare(pair.reference.image).tensor
    qmap, rmap = decomposition_maps(scene_model, xq, xr)
    exp = explain(scene_model, pair.query.image, pair.reference.image, method="decomposition")
    np.testing.assert_allclose(qmap[0].numpy(), exp.query_map, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rmap[0].numpy(), exp.reference_map, rtol=1e-5, atol=1e-7)
    assert abs(float(qmap.sum()) - exp.score) < 1e-5


def test_saliency_distribution_positive_part():
    s = torch.tensor([[[1.0, -2.0], [3.0, 0.0]], [[-1.0, -1.0], [-1.0, -1.0]]])
    d = saliency_distribution(s)
    np.testing.assert_allclose(d.numpy(), [[0.25, 0.0, 0.75, 0.0], [0.25] * 4])


def test_predictor_save_load_round_trip(tmp_path, scene_model, small_data):
    pred = fit_attribute_predictor(scene_model, small_data, epochs=2, show_progress=False)
    pred.set_prior(np.linspace(0.1, 0.9, len(SYNTHETIC_ATTRIBUTES)))
    path = tmp_path / "pred.pt"
    pred.save(path)
    back = AttributePredictor.load(path)
    assert back.names == SYNTHETIC_ATTRIBUTES and back.has_prior and back.pooling == pred.pooling
    feats = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        for a, b in zip(pred(feats), back(feats)):
            assert torch.equal(a, b)
    np.testing.assert_allclose(back.prior.numpy(), np.linspace(0.1, 0.9, 13), rtol=1e-6)
    # The file loads with weights_only=True (no pickled code).
    assert isinstance(torch.load(path, weights_only=True), dict)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an attribute predictor"):
        AttributePredictor.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        AttributePredictor.load(tmp_path / "none.pt")


def test_saliency_term_lowers_its_distance(scene_model, small_data):
    _, plain = fit_attribute_predictor(scene_model, small_data, saliency_weight=0.0, epochs=15,
                                       show_progress=False, return_log=True)
    _, pulled = fit_attribute_predictor(scene_model, small_data, saliency_weight=200.0, epochs=15,
                                        show_progress=False, return_log=True)
    assert pulled["saliency_distance"][-1] < 0.8 * plain["saliency_distance"][-1]
    # The classification loss falls in both runs.
    assert plain["bce"][-1] < plain["bce"][0] and pulled["bce"][-1] < pulled["bce"][0]


def test_saliency_distance_formula():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1, 0, 0] = 50.0  # softmax ~ one-hot on cell 0
    sal = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    d = saliency_distance(maps, sal)[0]
    assert d[1] < 1e-6
    assert abs(float(d[0]) - math.sqrt(0.75**2 + 3 * 0.25**2)) < 1e-6


def test_ranking_known_answer_hand_built_predictor():
    model = load("mean_color", metric="dot", size=32)
    pred = _rgb_predictor()
    pred.set_prior([0.2, 0.9, 0.5])
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    # Shared: red, top-left in the query and bottom-right in the reference.
    query = _colour_image([(0, 0, red), (3, 3, green)])
    reference = _colour_image([(3, 3, red), (0, 0, blue)])
    ranking = explain_attributes(model, pred, query, reference, sides="query", agreement="l2",
                                 weights={"confidence": 0, "agreement": 1, "prior": 0})
    assert ranking.attributes[0] == "red"
    # Agreement by hand: saliency on the query is the red block's cells (dot with g_Y's red part).
    sal = np.zeros(64)
    sal[[0, 1, 8, 9]] = 0.25
    logits = np.full((3, 64), -3.0)
    logits[0, [0, 1, 8, 9]] = 7.0
    logits[1, [54, 55, 62, 63]] = 7.0
    for k, name in enumerate(("red", "green", "blue")):
        soft = np.exp(logits[k]) / np.exp(logits[k]).sum()
        expected = 1 - np.linalg.norm(soft - sal) / math.sqrt(2)
        assert ranking.get(name).components["agreement"] == pytest.approx(expected, abs=1e-5)
    # The "mass" agreement (the default): saliency under the softmax of the map, over the saliency's maximum.
    mass = explain_attributes(model, pred, query, reference, sides="query", agreement="mass")
    for k, name in enumerate(("red", "green", "blue")):
        soft = np.exp(logits[k]) / np.exp(logits[k]).sum()
        assert mass.get(name).components["agreement"] == pytest.approx(float(soft @ sal) / 0.25, abs=1e-5)
    assert mass.get("red").components["agreement"] > 0.99 and mass.get("green").components["agreement"] < 0.01
    # Confidence: max pooling of the logits through a sigmoid.
    assert ranking.get("red").components["confidence"] == pytest.approx(1 / (1 + math.exp(-7)), abs=1e-6)
    assert ranking.get("blue").components["confidence"] == pytest.approx(1 / (1 + math.exp(3)), abs=1e-6)
    # Prior only: the fitted prior's order. Both sides' confidence: red is the only colour on both.
    prior_only = explain_attributes(model, pred, query, reference,
                                    weights={"confidence": 0, "agreement": 0, "prior": 1})
    assert prior_only.attributes == ["green", "blue", "red"]
    with pytest.raises(ValueError, match="agreement='cosine' is not one of"):
        explain_attributes(model, pred, query, reference, agreement="cosine")
    both = explain_attributes(model, pred, query, reference, sides="both",
                              weights={"confidence": 1, "agreement": 0, "prior": 0})
    assert both.attributes[0] == "red"
    assert both.get("green").components["confidence"] == pytest.approx(
        math.sqrt(1 / (1 + math.exp(-7)) / (1 + math.exp(3))), abs=1e-6)
    # Scores are the weighted sums; the maps are the sigmoid activations on both images.
    default = explain_attributes(model, pred, query, reference)
    for s in default:
        assert s.score == pytest.approx(sum(s.components.values()), abs=1e-9)
    red_score = default.get("red")
    assert red_score.query_map.shape == (8, 8) and red_score.query_map.dtype == np.float32
    assert red_score.query_map[0, 0] == pytest.approx(1 / (1 + math.exp(-7)), abs=1e-6)
    assert red_score.reference_map[7, 7] == pytest.approx(1 / (1 + math.exp(-7)), abs=1e-6)
    exp = red_score.to_explanation(default.explanation)
    assert exp.method == "attribute:red" and exp.point_to_point is default.explanation.point_to_point
    assert len(explain_attributes(model, pred, query, reference, top=2)) == 2


def test_concept_prior_matches_directional_derivative(scene_model, small_data):
    cv = fit_concept_vectors(scene_model, small_data)
    assert cv.vectors.shape == (13, 16)
    np.testing.assert_allclose(np.linalg.norm(cv.vectors, axis=1), 1.0, rtol=1e-5)
    assert (cv.probe_accuracy > 0.5).all()
    # Analytic derivative for a linear head and cosine: d/dt cos(W(p + t v) + b, g_Y) at t=0.
    from simviz_widgets.attributes.predictor import image_batch

    x = image_batch(scene_model, small_data.images)
    with torch.no_grad():
        p = scene_model.pooling(scene_model.features(x)).double()
    W, b = scene_model.head_weight.double(), scene_model.head_bias.double()
    g = p @ W.T + b
    gy = g[torch.as_tensor(small_data.partners)]
    gn = g.norm(dim=1, keepdim=True)
    dcos = gy / (gn * gy.norm(dim=1, keepdim=True)) - g * (g * gy).sum(1, keepdim=True) / (
        gn**3 * gy.norm(dim=1, keepdim=True))
    deriv = (dcos @ W) @ torch.as_tensor(cv.vectors, dtype=torch.float64).T
    for k in range(13):
        rows = small_data.labels[:, k]
        assert cv.prior[k] == pytest.approx(float((deriv[rows, k] > 0).double().mean()), abs=1e-6)


def test_user_defined_attributes_from_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in (("reddish", (200, 30, 30)), ("bluish", (30, 30, 200)), ("greenish", (30, 200, 30))):
        (tmp_path / name).mkdir()
        for k in range(5):
            img = np.clip(np.array(colour)[None, None] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / name / f"{name}_{k}.png")
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(tmp_path / "reddish" / "bluish_0.png")
    (tmp_path / "reddish" / "notes.txt").write_text("not an image")
    data = attributes_from_folders(tmp_path)
    assert data.names == ("bluish", "greenish", "reddish")
    assert len(data) == 15  # bluish_0.png is in two folders: one image, two attributes
    both = data.sources.index(str(tmp_path / "bluish" / "bluish_0.png"))
    assert data.labels[both].tolist() == [True, False, True]
    assert data.labels.sum(0).tolist() == [5, 5, 6]
    for i, j in enumerate(data.partners):
        assert i != j and (data.labels[i] & data.labels[j]).any()
    model = load("mean_color", metric="cosine", size=32)
    cv = fit_concept_vectors(model, data)
    assert cv.probe_accuracy[1] == 1.0  # greenish is linearly separable in mean colour
    pred = fit_attribute_predictor(model, data, epochs=40, lr=0.1, show_progress=False)
    conf = pred.predict(model, [data.images[data.sources.index(str(tmp_path / "greenish" / "greenish_1.png"))]])
    assert conf["confidence"][0].argmax() == 1


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        attributes_from_folders(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="1 attribute folder"):
        attributes_from_folders(tmp_path)
    (tmp_path / "second").mkdir()
    with pytest.raises(ValueError, match="has 0 image"):
        attributes_from_folders(tmp_path)
    for d in ("only", "second"):
        for k in range(2):
            (tmp_path / d / f"{k}.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not be read"):
        attributes_from_folders(tmp_path)


def test_explain_attributes_errors():
    model = load("mean_color", metric="dot", size=32)
    pred = _rgb_predictor()
    img = _colour_image([(0, 0, (255, 0, 0))])
    with pytest.raises(ValueError, match=r"weights has unknown key\(s\) \['colour'\]"):
        explain_attributes(model, pred, img, img, weights={"colour": 1.0})
    with pytest.raises(ValueError, match="weights\\['prior'\\]=nan must be a finite number"):
        explain_attributes(model, pred, img, img, weights={"prior": float("nan")})
    with pytest.raises(ValueError, match="sides='left' is not one of"):
        explain_attributes(model, pred, img, img, sides="left")
    with pytest.raises(TypeError, match="predictor must be an AttributePredictor"):
        explain_attributes(model, object(), img, img)
    with pytest.raises(ValueError, match="expects 16 feature channels"):
        explain_attributes(model, AttributePredictor(("a",), 16), img, img)
    with pytest.raises(ValueError, match="pooling='sum' is not one of"):
        AttributePredictor(("a",), 3, pooling="sum")
    with pytest.raises(ValueError, match=r"names repeats \['a'\]"):
        AttributePredictor(("a", "a"), 3)
    with pytest.raises(ValueError, match=r"prior has shape \(1,\); expected 3 values, one per attribute"):
        pred.set_prior([0.5])
    with pytest.raises(ValueError, match="saliency_weight"):
        fit_attribute_predictor(model, AttributeData([img, img], np.array([[True], [False]]), ("a",),
                                                     np.array([1, 0])), saliency_weight=-1)


def test_attribute_panel_clicks_overlay_maps_on_viewer():
    from simviz_widgets.widgets.attribute_panel import AttributePanel
    from simviz_widgets.widgets.pair_viewer import PairViewer

    model = load("mean_color", metric="dot", size=32)
    pred = _rgb_predictor()
    red, green = (255, 0, 0), (0, 255, 0)
    ranking = explain_attributes(model, pred, _colour_image([(0, 0, red), (3, 3, green)]),
                                 _colour_image([(3, 3, red)]))
    viewer = PairViewer.from_explanation(ranking.explanation)
    seen = []
    panel = AttributePanel(ranking, viewer=viewer, on_select=seen.append)
    assert list(panel.bars.x) == ranking.attributes
    np.testing.assert_allclose(np.asarray(panel.bars.y)[:, 0],
                               [ranking[0].weighted[c] for c in ("confidence", "agreement", "prior")])
    index = ranking.attributes.index("red")
    panel.bars._handle_custom_msgs(None, {"event": "element_click", "data": {"index": index}})
    assert panel.selected == "red" and seen[-1].attribute == "red"
    assert viewer.explanation.method == "attribute:red"
    np.testing.assert_array_equal(viewer.explanation.query_map, ranking.get("red").query_map)
    assert list(panel.bars.selected) == [index] and "red" in panel.detail.value
    # Clicking the same bar again clears: the pair's own explanation comes back.
    panel.bars._handle_custom_msgs(None, {"event": "element_click", "data": {"index": index}})
    assert panel.selected is None and seen[-1] is None
    assert viewer.explanation is ranking.explanation
    with pytest.raises(ValueError, match=r"attribute='purple' is not one of \['red', 'green', 'blue'\]"):
        panel.select("purple")
    with pytest.raises(TypeError, match="an AttributeRanking from explain_attributes"):
        AttributePanel([1, 2])
    panel.to_figure()


def test_fit_with_another_saliency_method_uses_its_maps(scene_model):
    """With options the saliency comes from one explain() per image; for the decomposition that must
    give the same maps as the batched path, hence the same predictor; RISE's maps differ."""
    data = synthetic_attribute_data(scene_pairs(4, seed=5))
    a = fit_attribute_predictor(scene_model, data, epochs=3, saliency_weight=5.0, show_progress=False)
    b = fit_attribute_predictor(scene_model, data, epochs=3, saliency_weight=5.0, saliency="decomposition",
                                saliency_options={"bias": True}, show_progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)
    c = fit_attribute_predictor(scene_model, data, epochs=3, saliency_weight=5.0, saliency="rise",
                                saliency_options={"masks": 20, "seed": 0, "show_progress": False}, show_progress=False)
    assert not torch.allclose(a.conv.weight, c.conv.weight)
    with pytest.raises(ValueError, match="nope"):
        fit_attribute_predictor(scene_model, data, saliency="nope", show_progress=False)


def test_attribute_panel_for_viewer_reranks_on_new_pair_and_composes_in_explorer():
    from simviz_widgets.widgets import AttributePanel, PairExplorer, PairViewer

    model = load("mean_color", metric="dot", size=32)
    pred = _rgb_predictor()
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    explorer = PairExplorer(model, _colour_image([(0, 0, red), (3, 3, green)]), _colour_image([(3, 3, red)]),
                            size=64, panel_size=64,
                            attributes={"predictor": pred, "weights": {"confidence": 0, "agreement": 1, "prior": 0}})
    panel, viewer = explorer.attributes, explorer.viewer
    assert isinstance(panel, AttributePanel) and panel.ranking.attributes[0] == "red"
    assert panel.ranking.explanation is viewer.explanation
    panel.select("red")
    # The attribute's maps reach the viewer and, through it, the overall panel.
    assert viewer.explanation.method == "attribute:red" and explorer.panel.explanation is viewer.explanation
    assert viewer.method_dropdown.value == "attribute:red"
    panel.select("green")
    assert [m for m in viewer.method_dropdown.options if m.startswith("attribute:")] == ["attribute:green"]
    # A new pair in the viewer: the panel ranks it (blue is shared now) and clears the selection.
    viewer.set_pair(_colour_image([(1, 1, blue)]), _colour_image([(2, 2, blue), (0, 0, green)]))
    assert panel.selected is None and panel.ranking.attributes[0] == "blue"
    assert panel.ranking.explanation is viewer.explanation
    assert not any(m.startswith("attribute:") for m in viewer.method_dropdown.options)
    with pytest.raises(TypeError, match="predictor must be an AttributePredictor"):
        AttributePanel.for_viewer(viewer, object())
    with pytest.raises(ValueError, match="viewer has no model"):
        AttributePanel.for_viewer(PairViewer.from_explanation(viewer.explanation), pred)
    with pytest.raises(TypeError, match="attributes is int"):
        PairExplorer(model, _colour_image([]), _colour_image([]), attributes=3)
    explorer.close()


# ------------------------------------------------------------------------------------------------
# predictor files: every way a file can be wrong is an InputError naming the file and the problem


def _saved_blob(names=("red", "green"), channels=4):
    predictor = AttributePredictor(names, channels)
    predictor.set_prior([0.25] * len(names))
    return {"state_dict": predictor.state_dict(), "names": list(names), "in_channels": channels,
            "kernel_size": 1, "pooling": "mean"}


def _nan_weights(blob):
    blob["state_dict"]["conv.weight"][0, 0] = float("nan")
    return blob


def _other_shapes(blob):
    blob["state_dict"] = _saved_blob(("a", "b", "c"))["state_dict"]  # three attributes' weights, two names
    return blob


@pytest.mark.parametrize("make, message", [
    (lambda path: path.write_bytes(b""), r"could not be read \(EOFError"),  # was: a bare EOFError
    (lambda path: path.write_bytes(b"not a torch file"), "could not be read"),
    (lambda path: torch.save({k: v for k, v in _saved_blob().items() if k != "in_channels"}, path),
     r"expected a dict with \['state_dict', 'names', 'in_channels'"),  # was: a bare KeyError
    (lambda path: torch.save([1, 2], path), "it holds list"),
    (lambda path: torch.save({**_saved_blob(), "names": "ab"}, path), "names='ab' must be a sequence"),
    (lambda path: torch.save({**_saved_blob(), "names": ["red", "red"]}, path), r"names repeats \['red'\]"),
    (lambda path: torch.save({**_saved_blob(), "names": ["red", ""]}, path), r"names\[1\] is empty"),
    (lambda path: torch.save(_nan_weights(_saved_blob()), path),
     r"state_dict\['conv.weight'\] has NaN"),  # was: loaded silently
    (lambda path: torch.save(_other_shapes(_saved_blob()), path),
     r"state_dict\['prior'\] has shape \(3,\); expected \(2,\) for 2 attributes on 4 channels"),
    (lambda path: torch.save({**_saved_blob(), "kernel_size": 2}, path), "kernel_size=2 is not one of"),
    (lambda path: torch.save({**_saved_blob(), "in_channels": True}, path), "in_channels=True must be an integer"),
    (lambda path: torch.save({**_saved_blob(), "state_dict": {}}, path), r"state_dict lacks key\(s\)"),
])
def test_a_bad_predictor_file_is_an_input_error_naming_the_file(tmp_path, make, message):
    from simviz_widgets.checks import InputError, SimvizError

    path = tmp_path / "predictor.pt"
    make(path)
    with pytest.raises(SimvizError, match=message) as info:
        AttributePredictor.load(path)
    assert isinstance(info.value, (InputError, TypeError)) and str(path) in str(info.value)


def test_predictor_names_are_distinct_non_empty_strings():
    """Was: ``names='ab'`` made two attributes 'a' and 'b'; ``[1, 2]`` became '1' and '2'."""
    from simviz_widgets.checks import InputError, InputTypeError

    with pytest.raises(InputTypeError, match="names='ab' must be a sequence"):
        AttributePredictor("ab", 3)
    with pytest.raises(InputTypeError, match=r"names\[0\]=1 must be a string"):
        AttributePredictor([1, 2], 3)
    with pytest.raises(InputError, match="names is empty"):
        AttributePredictor([], 3)
    with pytest.raises(InputTypeError, match="in_channels=True must be an integer"):
        AttributePredictor(["a"], True)
    with pytest.raises(InputError, match="in_channels=0 must be >= 1"):
        AttributePredictor(["a"], 0)
    with pytest.raises(InputError, match=r"prior has values outside \[0, 1\]"):
        AttributePredictor(["a"], 3).set_prior([1.5])
    assert AttributePredictor(np.array(["a", "b"]), np.int64(3)).names == ("a", "b")


def test_save_refuses_what_load_would_refuse(tmp_path):
    from simviz_widgets.checks import InputError

    predictor = AttributePredictor(["a", "b"], 4)
    with pytest.raises(InputError, match="folder .* does not exist"):
        predictor.save(tmp_path / "missing" / "p.pt")
    with torch.no_grad():
        predictor.conv.bias[1] = float("inf")
    path = tmp_path / "p.pt"
    with pytest.raises(InputError, match=r"\['conv.bias'\] have NaN or infinite values"):
        predictor.save(path)
    assert not path.exists()  # nothing half-written
    with torch.no_grad():
        predictor.conv.bias[1] = 0.0
    predictor.save(str(path))
    assert AttributePredictor.load(str(path)).names == ("a", "b")
