"""Metrics: protocol, deletion/insertion, pointing game, PCK, sanity randomisation, compare()."""

import numpy as np
import pytest
import torch

import simviz_widgets as sv
from simviz_widgets.adapters.copies import copy_model, fast_inference_copy
from simviz_widgets.datasets import load_photo, shared_object_pairs
from simviz_widgets.evaluate import (
    CATEGORIES,
    NEEDS,
    Metric,
    average_curves,
    compare,
    correspondence_rate,
    energy_pointing,
    get_metric,
    list_metrics,
    make_metric,
    mask_to_display,
    perturbation_curve,
    pointing_game,
    randomizable_layers,
    register_metric,
    sanity_randomization,
)
from simviz_widgets.evaluate.perturbation_curves import background_tensor, pixel_counts
from simviz_widgets.explain import Explainer, PairExplanation, PointToPoint
from simviz_widgets.explain import base as explain_base
from simviz_widgets.images import PreprocessConfig, prepare_image

# ------------------------------------------------------------------------------------------
# helpers


def hand(query, reference, query_map, reference_map=None, p2p=None):
    reference_map = query_map if reference_map is None else reference_map
    return PairExplanation("hand", 0.0, query, reference, query_map, reference_map, signed=False,
                           point_to_point=p2p)


@pytest.fixture(scope="module")
def mean_color():
    return sv.load_model("mean_color", metric="cosine")


@pytest.fixture(scope="module")
def tiny():
    return sv.load_model("tiny_test")


@pytest.fixture
def centre_bias(monkeypatch):
    """An unfaithful 'method': a fixed centre-bias map, registered only for one test."""

    class CentreBias(Explainer):
        name = "centre_bias"
        options = {}

        def compute(self, model, query, reference):
            def bump(size):
                r, c = np.mgrid[0:size[0], 0:size[1]]
                return -((r - (size[0] - 1) / 2) ** 2 + (c - (size[1] - 1) / 2) ** 2).astype(np.float32)

            return PairExplanation("centre_bias", 0.0, query.display, reference.display,
                                   bump(query.size), bump(reference.size), signed=False)

    monkeypatch.setitem(explain_base._METHODS, "centre_bias", CentreBias)
    return CentreBias


def red_blue_pair():
    """Query: left half red, right half blue; reference: red. Only the red half matters."""
    q = np.zeros((32, 32, 3), np.uint8)
    q[:, :16, 0] = 255
    q[:, 16:, 2] = 255
    r = np.zeros((32, 32, 3), np.uint8)
    r[..., 0] = 255
    return q, r


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------------
# protocol


def test_registered_metrics_declare_how_to_read_them():
    names = list_metrics()
    assert set(names) >= {"deletion", "insertion", "pointing_game", "energy_pointing", "correspondence_pck",
                          "sanity_randomization"}
    for name in names:
        m = get_metric(name)
        assert m.name == name and m.category in CATEGORIES and set(m.needs) <= set(NEEDS)
        assert isinstance(m.higher_is_better, bool)
    expected = {"deletion": False, "insertion": True, "pointing_game": True, "energy_pointing": True,
                "correspondence_pck": True, "sanity_randomization": False}
    assert {n: get_metric(n).higher_is_better for n in expected} == expected
    assert get_metric("deletion").label == "deletion (↓)"
    assert list_metrics("localisation") == ["energy_pointing", "pointing_game"]
    assert get_metric("pointing_game").needs == {"mask"}
    assert get_metric("correspondence_pck").needs == {"mapping"}


def test_metric_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="not registered.*Did you mean 'deletion'"):
        get_metric("deleton")
    with pytest.raises(TypeError, match="unknown option.*'colour'"):
        get_metric("pointing_game", colour=1)
    with pytest.raises(ValueError, match="metric 'deletion': option background='pink' is not one of"):
        get_metric("deletion", background="pink")
    with pytest.raises(ValueError, match="steps=1 must be >= 2"):
        get_metric("insertion", steps=1)
    with pytest.raises(ValueError, match="category"):
        @register_metric("bad_metric")
        class Bad(Metric):
            category = "vibes"
    with pytest.raises(TypeError, match="not understood"):
        make_metric(3)
    assert make_metric(("pointing_game", {"tolerance": 2.0})).config["tolerance"] == 2.0
    with pytest.raises(ValueError, match="needs \\['mask'\\]"):
        image = np.zeros((8, 8, 3), np.uint8)
        get_metric("pointing_game")(hand(image, image, np.ones((2, 2), np.float32)))


# ------------------------------------------------------------------------------------------
# deletion / insertion


def test_pixel_counts_follow_the_protocol():
    k = pixel_counts(1000)
    assert len(k) == 101 and k[0] == 1 and k[-1] == 1000 and k[50] == 500 and k[1] == 10
    assert np.all(np.diff(k) >= 0)
    assert pixel_counts(50)[1] == 1  # round(0.5) -> max(0, 1)


def test_curve_scores_equal_the_mean_colour_cosine(mean_color):
    """mean_color embeds an image as its mean RGB: every point of the curve is known in closed form."""
    q, r = red_blue_pair()
    order = np.random.default_rng(1).permutation(32 * 32)  # rank of each pixel, 0 = most salient
    saliency = (-order).reshape(32, 32).astype(np.float32)
    exp = hand(q, r, saliency)
    ref = r.reshape(-1, 3).mean(0) / 255
    pixels = q.reshape(-1, 3) / 255.0
    for mode in ("deletion", "insertion"):
        curve = perturbation_curve(mean_color, exp, mode=mode, show_progress=False, batch_size=17)
        expected = []
        for k in curve.counts:
            chosen = (order < k)[:, None]
            kept = ~chosen if mode == "deletion" else chosen
            expected.append(cosine(np.where(kept, pixels, 0.5).mean(0), ref))
        np.testing.assert_allclose(curve.scores, expected, atol=1e-6)
    # First and last points: insertion ends at the real pair, deletion at the all-grey image.
    ins = perturbation_curve(mean_color, exp, mode="insertion", show_progress=False)
    dele = perturbation_curve(mean_color, exp, mode="deletion", show_progress=False)
    assert ins.scores[-1] == pytest.approx(cosine(pixels.mean(0), ref), abs=1e-6)
    assert dele.scores[-1] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert dele.scores[0] == pytest.approx(cosine(np.where((order == 0)[:, None], 0.5, pixels).mean(0), ref), abs=1e-6)


def test_a_map_that_ranks_what_matters_first_wins(mean_color):
    q, r = red_blue_pair()
    perfect = np.zeros((32, 32), np.float32)
    perfect[:, :16] = 1.0  # the red half is what makes the query like the red reference
    noise = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    auc = {}
    for name, m in (("perfect", perfect), ("random", noise), ("reverse", 1 - perfect)):
        for mode in ("deletion", "insertion"):
            auc[name, mode] = perturbation_curve(mean_color, hand(q, r, m), mode=mode, show_progress=False).auc
    assert auc["perfect", "deletion"] < auc["random", "deletion"] < auc["reverse", "deletion"]
    assert auc["perfect", "insertion"] > auc["random", "insertion"] > auc["reverse", "insertion"]
    # Known numbers: deletion of the red half first drops the cosine to its minimum at t = 0.5.
    curve = perturbation_curve(mean_color, hand(q, r, perfect), mode="deletion", show_progress=False)
    assert int(np.argmin(curve.scores)) == 50
    assert curve.scores[50] == pytest.approx(cosine(np.array([0.25, 0.25, 0.75]), np.array([1.0, 0, 0])))
    # Metric objects report the same AUC as the curve.
    metric_value = get_metric("deletion")(hand(q, r, perfect), model=mean_color)
    assert metric_value == pytest.approx(auc["perfect", "deletion"])


def test_feature_resolution_maps_are_upsampled_bilinearly(mean_color):
    """An 8x8 map and its bilinear upsampling give the same curve."""
    from simviz_widgets.render import upsample_bilinear

    q, r = red_blue_pair()
    coarse = np.random.default_rng(3).random((8, 8)).astype(np.float32)
    a = perturbation_curve(mean_color, hand(q, r, coarse), mode="insertion", show_progress=False)
    b = perturbation_curve(mean_color, hand(q, r, upsample_bilinear(coarse, (32, 32))), mode="insertion",
                           show_progress=False)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_backgrounds_go_through_the_models_normalisation():
    cfg = PreprocessConfig(input_size=(4, 4), resize_short=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    grey = background_tensor(image, cfg, "grey")
    expected = (0.5 - np.array(cfg.mean)) / np.array(cfg.std)
    np.testing.assert_allclose(grey[:, 2, 3].numpy(), expected, rtol=1e-6)
    flat = np.full((6, 6, 3), 40, np.uint8)
    blurred = background_tensor(flat, cfg, "blur", blur_sigma=2.0)
    np.testing.assert_allclose(blurred.numpy(), prepare_image(flat, PreprocessConfig(
        input_size=(6, 6), resize_short=None, mean=cfg.mean, std=cfg.std)).tensor[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="blur_sigma"):
        background_tensor(flat, cfg, "blur", blur_sigma=0)


def test_blur_background_deletion_ends_at_the_blurred_image(mean_color):
    q, r = red_blue_pair()
    curve = perturbation_curve(mean_color, hand(q, r, np.ones((4, 4), np.float32)), mode="deletion",
                               background="blur", blur_sigma=3.0, show_progress=False)
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(q.astype(np.float32), sigma=(3, 3, 0)) / 255.0
    assert curve.scores[-1] == pytest.approx(cosine(blurred.reshape(-1, 3).mean(0), np.array([1.0, 0, 0])), abs=1e-5)


def test_mean_curve_auc_equals_mean_of_pair_aucs_and_flat_curves_are_nan(mean_color):
    q, r = red_blue_pair()
    rng = np.random.default_rng(5)
    curves = [perturbation_curve(mean_color, hand(q, r, rng.random((8, 8)).astype(np.float32)),
                                 mode="deletion", steps=21, show_progress=False) for _ in range(3)]
    summary = average_curves(curves)
    assert summary.auc == pytest.approx(np.mean([c.auc for c in curves]))
    assert summary.n_pairs == 3 and summary.n_flat == 0 and len(summary.mean_curve) == 21
    grey = np.full((32, 32, 3), 128, np.uint8)  # any grey has cosine 1/sqrt(3) with red: a flat curve
    flat = perturbation_curve(mean_color, hand(grey, r, np.ones((8, 8), np.float32)), mode="deletion",
                              steps=21, show_progress=False)
    assert np.isnan(flat.auc)
    assert average_curves(curves + [flat]).n_flat == 1
    assert average_curves(curves + [flat]).auc == pytest.approx(summary.auc)
    with pytest.raises(ValueError, match="different fractions"):
        average_curves([curves[0], perturbation_curve(mean_color, hand(q, r, np.ones((2, 2), np.float32)),
                                                      mode="deletion", steps=11, show_progress=False)])
    with pytest.raises(ValueError, match="mix modes"):
        average_curves([curves[0], perturbation_curve(mean_color, hand(q, r, np.ones((2, 2), np.float32)),
                                                      mode="insertion", steps=21, show_progress=False)])


def test_perturbation_errors_and_user_model_untouched(mean_color, tiny):
    q, r = red_blue_pair()
    exp = hand(q, r, np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match="mode='remove' is not one of"):
        perturbation_curve(mean_color, exp, mode="remove")
    with pytest.raises(ValueError, match="32x32 but the model's input is 64x64"):
        perturbation_curve(tiny, exp)
    with pytest.raises(TypeError, match="PairExplanation"):
        perturbation_curve(mean_color, "map")
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    fast = fast_inference_copy(tiny)
    x = tiny.prepare(load_photo("chelsea")).tensor
    with torch.no_grad():
        np.testing.assert_allclose(fast.embed_tensor(x.contiguous(memory_format=torch.channels_last)).numpy(),
                                   tiny.embed_tensor(x).numpy(), atol=1e-5)
    for k, v in tiny.module.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous()


# ------------------------------------------------------------------------------------------
# pointing game


def test_pointing_game_known_answers():
    image = np.zeros((64, 64, 3), np.uint8)
    m = np.zeros((8, 8), np.float32)
    m[2, 5] = 1.0  # cell centre at pixel (19.5, 43.5): the upsampled peak is pixels 19..20 x 43..44
    exp = hand(image, image, m)
    inside = np.zeros((64, 64), bool)
    inside[16:24, 40:48] = True
    elsewhere = np.zeros((64, 64), bool)
    elsewhere[40:60, 0:20] = True
    assert pointing_game(exp, inside) == 1.0
    assert pointing_game(exp, elsewhere) == 0.0
    # Mask ends at col 38: 5 px from the peak's col 43, 6 px from its col 44.
    near = np.zeros((64, 64), bool)
    near[19:21, 30:39] = True
    assert pointing_game(exp, near, tolerance=4.9) == 0.0
    assert pointing_game(exp, near, tolerance=5.0) == 0.5
    assert pointing_game(exp, near, tolerance=6.0) == 1.0
    # The peak plateau straddles the border: half its pixels hit.
    half = np.zeros((64, 64), bool)
    half[:, :44] = True
    assert pointing_game(exp, half) == 0.5
    # A constant map has no preferred point: it scores the mask's area fraction (chance).
    flat = hand(image, image, np.ones((8, 8), np.float32))
    assert pointing_game(flat, elsewhere) == pytest.approx(elsewhere.mean())


def test_energy_pointing_known_answers():
    image = np.zeros((16, 16, 3), np.uint8)
    values = np.ones((16, 16), np.float32)
    values[:8] = 3.0  # three times the mass in the top half
    values[15, 15] = -50.0  # negative evidence does not count
    mask = np.zeros((16, 16), bool)
    mask[:8] = True
    exp = hand(image, image, values)
    total = 3 * 128 + 127
    assert energy_pointing(exp, mask) == pytest.approx(3 * 128 / total)
    assert energy_pointing(hand(image, image, -values), mask) == 0.0  # the only positive mass is at (15, 15)
    assert np.isnan(energy_pointing(hand(image, image, -np.abs(values)), mask))
    # side="both" averages the two images (the reference map is uniform here).
    exp2 = hand(image, image, values, np.ones((16, 16), np.float32))
    metric = get_metric("energy_pointing")
    assert metric(exp2, query_mask=mask, reference_mask=mask) == pytest.approx((3 * 128 / total + 0.5) / 2)
    assert get_metric("energy_pointing", side="reference")(exp2, reference_mask=mask) == pytest.approx(0.5)
    # A side whose map is all zeros was not computed (e.g. RISE with both=False): not scored.
    exp3 = hand(image, image, values, np.zeros((16, 16), np.float32))
    assert metric(exp3, query_mask=mask, reference_mask=mask) == pytest.approx(3 * 128 / total)
    assert np.isnan(get_metric("pointing_game", side="both")(exp3, reference_mask=mask))


def test_masks_are_checked_at_the_boundary():
    image = np.zeros((16, 16, 3), np.uint8)
    exp = hand(image, image, np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="query mask is 8x8 but expected 16x16 .the explained image's size"):
        pointing_game(exp, np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="empty"):
        pointing_game(exp, np.zeros((16, 16), bool))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        energy_pointing(exp, np.full((16, 16), 0.5))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(exp, np.ones((16, 16), bool), tolerance=-1)
    with pytest.raises(ValueError, match="NaN"):
        pointing_game(hand(image, image, np.full((4, 4), np.nan, np.float32)), np.ones((16, 16), bool))


def test_mask_to_display_follows_resize_and_centre_crop():
    # 56 px image, short side -> 64, centre crop 56: display row r shows source row (r + 0.5) * 0.875 + 3.
    cfg = PreprocessConfig(input_size=(56, 56), resize_short=64)
    prepared = prepare_image(np.zeros((56, 56, 3), np.uint8), cfg)
    mask = np.zeros((56, 56), bool)
    mask[10:30, 20:21] = True
    shown = mask_to_display(mask, prepared)
    rows = np.flatnonzero(shown.any(axis=1))
    assert rows.min() == 7 and rows.max() == 29
    cols = np.flatnonzero(shown.any(axis=0))
    assert cols.tolist() == [19]  # source col 20 covers display cols with (c + 0.5) * 0.875 + 3 in [19.5, 20.5)
    with pytest.raises(ValueError, match="is 10x10 but expected 56x56 .the size of its image"):
        mask_to_display(np.ones((10, 10), bool), prepared)


# ------------------------------------------------------------------------------------------
# correspondence PCK


def test_correspondence_pck_on_a_hand_built_mirror():
    """Reference cell j matches query cell mirror(j): factors are one-hot, so argmaxes are known."""
    h = w = 4
    n = h * w
    eye = np.eye(n)
    mirror = np.array([r * w + (w - 1 - c) for r in range(h) for c in range(w)])
    p2p = PointToPoint(eye, eye[mirror], 1.0, (h, w), (h, w))
    image = np.zeros((32, 32, 3), np.uint8)
    exp = hand(image, image, np.ones((h, w), np.float32), p2p=p2p)

    def mirror_map(rows, cols):
        rows, cols = np.asarray(rows, float), np.asarray(cols, float)
        return rows, 31 - cols, np.ones(rows.shape, bool)

    def identity(rows, cols):
        rows, cols = np.asarray(rows, float), np.asarray(cols, float)
        return rows, cols, np.ones(rows.shape, bool)

    pck = get_metric("correspondence_pck", tolerance=0.0)
    assert pck(exp, mapping=mirror_map) == 1.0
    # Identity: only... no cell is its own mirror in a 4-wide grid; within one cell, the middle two columns.
    assert pck(exp, mapping=identity) == 0.0
    assert get_metric("correspondence_pck", tolerance=1.0)(exp, mapping=identity) == 0.5
    px = correspondence_rate(exp, identity, unit="pixels", tolerance=8.0)
    assert px.rate == 0.5 and px.unit == "pixels"
    np.testing.assert_allclose(np.sort(np.unique(px.distances)), [8.0, 24.0])
    no_p2p = hand(image, image, np.ones((h, w), np.float32))
    assert np.isnan(pck(no_p2p, mapping=identity))
    with pytest.raises(ValueError, match="unit='inches' is not one of"):
        get_metric("correspondence_pck", unit="inches")


# ------------------------------------------------------------------------------------------
# sanity: cascading randomisation


def test_copy_model_reproduces_every_head_and_never_touches_the_original():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for head in ("linear", "mlp", "linear_bn", "identity"):
        model = sv.load_model("tiny_test", head=head)
        copied = copy_model(model)
        assert copied.module is not model.module
        with torch.no_grad():
            assert torch.equal(copied.embed_tensor(x), model.embed_tensor(x))
    model = sv.load_model("tiny_test")
    assert randomizable_layers(model) == ["backbone.0", "backbone.2", "backbone.4", "head"]


def test_decomposition_maps_decorrelate_as_layers_are_randomised(tiny):
    cat = load_photo("chelsea")
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    with torch.no_grad():
        embedding = tiny.embed(cat)
    result = sanity_randomization(tiny, cat, cat[:, ::-1], "decomposition", show_progress=False)
    assert result.labels == ["head", "backbone.4", "backbone.2", "backbone.0"]
    assert result.correlations[0] < 0.9  # the head alone already changes the map
    assert np.all(result.correlations[1:] < 0.5)  # once the top conv is random too, the map is another
    assert result.mean_correlation < 0.5
    # The user's model is untouched.
    for k, v in tiny.module.state_dict().items():
        assert torch.equal(v, before[k])
    with torch.no_grad():
        assert torch.equal(tiny.embed(cat), embedding)
    # Seeded: the same call gives the same curve.
    again = sanity_randomization(tiny, cat, cat[:, ::-1], "decomposition", show_progress=False)
    np.testing.assert_array_equal(again.correlations, result.correlations)
    grouped = sanity_randomization(tiny, cat, cat[:, ::-1], "decomposition", max_steps=2, show_progress=False)
    assert grouped.steps == [["head", "backbone.4"], ["backbone.2", "backbone.0"]]


def test_a_centre_bias_map_fails_the_sanity_check(tiny, centre_bias):
    cat = load_photo("chelsea")
    result = sanity_randomization(tiny, cat, cat[:, ::-1], "centre_bias", randomization="reset",
                                  show_progress=False)
    np.testing.assert_allclose(result.correlations, np.ones(4), atol=1e-12)
    exp = sv.explain(tiny, cat, cat, method="centre_bias")
    assert get_metric("sanity_randomization")(exp, model=tiny) == pytest.approx(1.0, abs=1e-12)


def test_sanity_errors(tiny):
    cat = load_photo("chelsea")
    with pytest.raises(ValueError, match="layers \\['fc'\\] are not layers"):
        sanity_randomization(tiny, cat, cat, layers=["fc"], show_progress=False)
    with pytest.raises(ValueError, match="randomization='shuffle' is not one of"):
        sanity_randomization(tiny, cat, cat, randomization="shuffle", show_progress=False)
    with pytest.raises(ValueError, match="not registered"):
        sanity_randomization(tiny, cat, cat, "no_such_method", show_progress=False)


# ------------------------------------------------------------------------------------------
# compare


def test_compare_table_matches_direct_metric_calls(tiny, centre_bias):
    pairs = shared_object_pairs(n=3, seed=1, size=64)
    metrics = ["pointing_game", ("deletion", {"steps": 11})]
    result = compare(tiny, pairs, ["decomposition", "centre_bias"], metrics, show_progress=False)
    table = result.table
    assert [row["method"] for row in table] == ["decomposition", "centre_bias"]
    for method in ("decomposition", "centre_bias"):
        direct_pg, direct_del = [], []
        for p in pairs:
            exp = sv.explain(tiny, p.query, p.reference, method=method)
            direct_pg.append(pointing_game(exp, p.query_mask) / 2
                             + pointing_game(exp, p.reference_mask, side="reference") / 2)
            direct_del.append(get_metric("deletion", steps=11)(exp, model=tiny))
        np.testing.assert_allclose(result.values[method]["pointing_game"], direct_pg)
        np.testing.assert_allclose(result.values[method]["deletion"], direct_del, atol=1e-3)
        row = table[[r["method"] for r in table].index(method)]
        assert row["pointing_game"] == pytest.approx(np.mean(direct_pg))
        assert row["pointing_game_std"] == pytest.approx(np.std(direct_pg))
        assert row["deletion_n"] == 3 and row["runtime_s"] > 0
    md = result.to_markdown()
    assert md.splitlines()[0] == "| method | runtime (s) ↓ | pointing_game (↑) | deletion (↓) |"
    best = min(table, key=lambda r: r["deletion"])["method"]
    best_line = next(line for line in md.splitlines() if line.startswith(f"| {best} "))
    assert best_line.split(" | ")[3].startswith("**")
    assert "<table>" in result._repr_html_()
    fig = result.plot()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["pointing_game\nlocalisation: higher is better →", "deletion\nfaithfulness: ← lower is better",
                      "runtime_s\ncost: ← lower is better"]
    # Bars sorted best on top: the deletion panel's top label is the lowest AUC.
    assert fig.axes[1].get_yticklabels()[-1].get_text() == best


def test_compare_inputs_and_errors(tiny, monkeypatch):
    cat = load_photo("chelsea")
    pairs = [(cat, cat[:, ::-1])]
    assert compare(tiny, pairs, ["decomposition"], show_progress=False).table[0].keys() >= {"deletion", "insertion"}
    with pytest.raises(ValueError, match="metric 'pointing_game' needs \\['mask'\\], which pairs\\[0\\] does not have"):
        compare(tiny, pairs, ["decomposition"], ["pointing_game"], show_progress=False)
    with pytest.raises(ValueError, match=r"pairs\[0\] lacks key\(s\) \['reference'\]"):
        compare(tiny, [{"query": cat}], ["decomposition"], show_progress=False)
    with pytest.raises(ValueError, match="pairs is empty"):
        compare(tiny, [], ["decomposition"], show_progress=False)
    with pytest.raises(ValueError, match="not registered"):
        compare(tiny, pairs, ["no_such_method"], show_progress=False)

    class Broken(Explainer):
        name = "broken"
        options = {}

        def compute(self, model, query, reference):
            raise RuntimeError("boom")

    monkeypatch.setitem(explain_base._METHODS, "broken", Broken)
    with pytest.raises(RuntimeError, match="boom"):
        compare(tiny, pairs, ["broken"], [("deletion", {"steps": 5})], show_progress=False)
    result = compare(tiny, pairs, ["decomposition", "broken"], [("deletion", {"steps": 5})], errors="skip",
                     show_progress=False)
    assert result.errors["broken"] == ["pairs[0]: RuntimeError: boom"]
    assert "n/a" in result.to_markdown().splitlines()[-1]
    # Dict pairs with source-coordinate masks are carried to display pixels.
    mask = np.zeros(cat.shape[:2], bool)
    mask[50:200, 100:300] = True
    out = compare(tiny, [{"query": cat, "reference": cat, "query_mask": mask}], ["decomposition"],
                  ["pointing_game"], show_progress=False)
    assert out.table[0]["pointing_game_n"] == 1


def test_curve_and_sanity_plots_label_their_reading(mean_color, tiny):
    import matplotlib.pyplot as plt

    q, r = red_blue_pair()
    curves = [perturbation_curve(mean_color, hand(q, r, np.eye(4, dtype=np.float32)), mode="insertion", steps=11,
                                 show_progress=False)]
    ax = average_curves(curves).plot()
    assert ax.get_title() == "insertion (higher AUC is better)"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curves[0].normalized)
    cat = load_photo("chelsea")
    result = sanity_randomization(tiny, cat, cat, "decomposition", max_steps=2, show_progress=False)
    ax = result.plot()
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "original", "head .. backbone.4", "backbone.2 .. backbone.0"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.r_[1.0, result.correlations])
    plt.close("all")
