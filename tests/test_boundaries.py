"""Every public entry point of datasets, render, evaluate, attributes, models and widgets refuses bad
input with a :class:`~simviz_widgets.checks.SimvizError` whose message names the input.

One table: each row is (what is called, the name the message must contain). Bad inputs of each kind
are tried where they apply: a wrong type, a bool where an integer is expected, NaN, a negative
number, an empty sequence, a wrong shape, an unknown name. A row passes only if the call raises an
InputError / InputTypeError (never a bare ``ValueError``, ``KeyError``, ``AttributeError`` from deep
inside, and never a silent success) and the error names the input. Then: nothing the caller passed
is modified (read-only inputs go through every array function).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from widget_helpers import make_explanation

from simviz_widgets.checks import InputError, InputTypeError, SimvizError

NAN = float("nan")
GOOD_IMAGE = np.zeros((32, 32, 3), np.uint8)


@lru_cache(maxsize=None)
def tiny():
    from simviz_widgets.models import load

    return load("tiny_test")


@lru_cache(maxsize=None)
def explanation():
    return make_explanation(query_size=(64, 64), reference_size=(64, 64))


@lru_cache(maxsize=None)
def tiny_explanation():
    import simviz_widgets as sv

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return sv.explain(tiny(), image, image[:, ::-1])


@lru_cache(maxsize=None)
def predictor():
    from simviz_widgets.attributes import AttributePredictor

    return AttributePredictor(("red", "green"), 16)


def ranking():
    from simviz_widgets.attributes import AttributeRanking, AttributeScore

    exp = explanation()
    score = AttributeScore("red", 1.0, {"confidence": 1.0, "agreement": 0.0, "prior": 0.0},
                           {"confidence": 1.0, "agreement": 0.0, "prior": 0.0},
                           np.zeros((7, 7), np.float32), np.zeros((5, 9), np.float32))
    return AttributeRanking([score], explanation=exp, weights={}, sides="both")


def cases():
    from simviz_widgets import datasets, evaluate, render
    from simviz_widgets.attributes import (
        AttributeData,
        AttributePredictor,
        attributes_from_folders,
        explain_attributes,
        fit_attribute_predictor,
        fit_concept_vectors,
        rank_components,
        synthetic_attribute_data,
    )
    from simviz_widgets.datasets.synthetic import SceneObject, attribute_group
    from simviz_widgets.models import load
    from simviz_widgets.models.efficientnet import imagenet_top_k
    from simviz_widgets.models.synthetic import scene_batch, train_scene_model
    from simviz_widgets.widgets import AttributePanel, HoverState, OverallPanel, PairExplorer, PairViewer
    from simviz_widgets.widgets.comparison import ComparisonSession, MethodComparisonPanel

    exp = explanation
    mask = np.ones((64, 64), bool)
    rows = [
        # ---------------------------------------------------------------- datasets
        ("load_photo: wrong type", lambda: datasets.load_photo(3), "photo"),
        ("load_photo: empty", lambda: datasets.load_photo(""), "photo"),
        ("load_photo: unknown", lambda: datasets.load_photo("chelsae"), "photo"),
        ("views: unknown kind", lambda: datasets.views(GOOD_IMAGE, "flip"), "view kind"),
        ("views: kind not a str", lambda: datasets.views(GOOD_IMAGE, 3), "view kind"),
        ("views: unknown parameter", lambda: datasets.views(GOOD_IMAGE, "rotation", degrees=3), "degrees"),
        ("views: image wrong type", lambda: datasets.views("chelsea.png", "mirror"), "image"),
        ("views: image wrong shape", lambda: datasets.views(np.zeros((4, 4, 2), np.uint8), "mirror"), "image"),
        ("views: image wrong dtype", lambda: datasets.views(np.zeros((4, 4, 3)), "mirror"), "image"),
        ("views: image empty", lambda: datasets.views(np.zeros((0, 4, 3), np.uint8), "mirror"), "image"),
        ("views: angle NaN", lambda: datasets.views(GOOD_IMAGE, "rotation", angle=NAN), "angle"),
        ("views: angle str", lambda: datasets.views(GOOD_IMAGE, "rotation", angle="20"), "angle"),
        ("views: centre wrong shape", lambda: datasets.views(GOOD_IMAGE, "rotation", centre=(1, 2, 3)), "centre"),
        ("views: fraction negative", lambda: datasets.views(GOOD_IMAGE, "crop_scale", fraction=-0.5), "fraction"),
        ("views: fraction bool", lambda: datasets.views(GOOD_IMAGE, "crop_scale", fraction=True), "fraction"),
        ("views: box wrong shape", lambda: datasets.views(GOOD_IMAGE, "crop_scale", box=(0, 0, 4)), "box"),
        ("views: box NaN", lambda: datasets.views(GOOD_IMAGE, "crop_scale", box=(0, 0, NAN, 4)), "box"),
        ("views: size float", lambda: datasets.views(GOOD_IMAGE, "crop_scale", size=(4.5, 4)), "size"),
        ("views: size bool", lambda: datasets.views(GOOD_IMAGE, "crop_scale", size=(True, 4)), "size"),
        ("views: strength negative", lambda: datasets.views(GOOD_IMAGE, "perspective", strength=-0.1), "strength"),
        ("views: seed negative", lambda: datasets.views(GOOD_IMAGE, "perspective", seed=-1), "seed"),
        ("views: corner offsets NaN",
         lambda: datasets.views(GOOD_IMAGE, "perspective", corner_offsets=np.full((4, 2), NAN)), "corner_offsets"),
        ("views: brightness negative", lambda: datasets.views(GOOD_IMAGE, "color", brightness=-1), "brightness"),
        ("views: hue NaN", lambda: datasets.views(GOOD_IMAGE, "color", hue=NAN), "hue"),
        ("views: seed str", lambda: datasets.views(GOOD_IMAGE, "color", seed="0"), "seed"),
        ("shared_object_pairs: n bool", lambda: datasets.shared_object_pairs(n=True), "n"),
        ("shared_object_pairs: n float", lambda: datasets.shared_object_pairs(n=2.5), "n"),
        ("shared_object_pairs: n negative", lambda: datasets.shared_object_pairs(n=-1), "n"),
        ("shared_object_pairs: size NaN", lambda: datasets.shared_object_pairs(n=1, size=NAN), "size"),
        ("shared_object_pairs: seed str", lambda: datasets.shared_object_pairs(n=1, seed="0"), "seed"),
        ("shared_object_pairs: objects str", lambda: datasets.shared_object_pairs(n=1, objects="horse"), "objects"),
        ("shared_object_pairs: objects empty", lambda: datasets.shared_object_pairs(n=1, objects=[]), "objects"),
        ("shared_object_pairs: unknown object", lambda: datasets.shared_object_pairs(n=1, objects=["unicorn"]),
         "objects"),
        ("shared_object_pairs: unknown background",
         lambda: datasets.shared_object_pairs(n=1, backgrounds=["brick", "lava"]), "backgrounds"),
        ("shared_object_pairs: scale wrong shape", lambda: datasets.shared_object_pairs(n=1, scale=0.4), "scale"),
        ("shared_object_pairs: scale NaN", lambda: datasets.shared_object_pairs(n=1, scale=(NAN, 0.5)), "scale"),
        ("shared_object_pairs: margin negative", lambda: datasets.shared_object_pairs(n=1, margin=-2), "margin"),
        ("paste_object: unknown", lambda: datasets.paste_object("unicorn", 8, 8), "object_name"),
        ("paste_object: height bool", lambda: datasets.paste_object("horse", True, 8), "height"),
        ("background_crop: box wrong shape", lambda: datasets.background_crop("brick", (0, 0), 16), "box"),
        ("scene_pairs: n bool", lambda: datasets.scene_pairs(True), "n"),
        ("scene_pairs: n negative", lambda: datasets.scene_pairs(-3), "n"),
        ("scene_pairs: seed float", lambda: datasets.scene_pairs(1, seed=0.5), "seed"),
        ("scene_pairs: objects too many", lambda: datasets.scene_pairs(1, objects=4), "objects"),
        ("scene_pairs: attributes str", lambda: datasets.scene_pairs(1, attributes="red"), "attributes"),
        ("scene_pairs: attributes empty", lambda: datasets.scene_pairs(1, attributes=()), "attributes"),
        ("scene_pairs: unknown attribute", lambda: datasets.scene_pairs(1, attributes=["purple"]), "attributes"),
        ("negative_pairs: size float", lambda: datasets.negative_pairs(1, size=64.0), "size"),
        ("random_scenes: seed negative", lambda: datasets.random_scenes(1, seed=-1), "seed"),
        ("render_scene: objects wrong type", lambda: datasets.render_scene([("red", "circle")]), "objects[0]"),
        ("render_scene: unknown shape",
         lambda: datasets.render_scene([SceneObject("red", "hexagon", "plain", "large", (32.0, 32.0), 8.0)]),
         "shape"),
        ("render_scene: size bool", lambda: datasets.render_scene([], size=True), "size"),
        ("attribute_group: unknown", lambda: attribute_group("purple"), "attribute"),
        # ---------------------------------------------------------------- render
        ("colormap_lut: unknown", lambda: render.colormap_lut("jett"), "cmap"),
        ("colormap_lut: wrong type", lambda: render.colormap_lut(3), "cmap"),
        ("normalize_map: NaN", lambda: render.normalize_map(np.array([[NAN, 1.0]])), "map"),
        ("normalize_map: wrong shape", lambda: render.normalize_map(np.zeros(4)), "map"),
        ("normalize_map: empty", lambda: render.normalize_map(np.zeros((0, 3))), "map"),
        ("normalize_map: wrong type", lambda: render.normalize_map("map"), "map"),
        ("normalize_map: ragged", lambda: render.normalize_map([[1.0, 2.0], [3.0]]), "map"),
        ("normalize_map: unknown mode", lambda: render.normalize_map(np.ones((2, 2)), mode="zscore"), "mode"),
        ("normalize_map: vmin NaN", lambda: render.normalize_map(np.ones((2, 2)), vmin=NAN), "vmin"),
        ("normalize_map: vmax str", lambda: render.normalize_map(np.ones((2, 2)), vmax="1"), "vmax"),
        ("map_to_rgba: alpha negative", lambda: render.map_to_rgba(np.ones((2, 2)), alpha=-0.1), "alpha"),
        ("map_to_rgba: alpha NaN", lambda: render.map_to_rgba(np.ones((2, 2)), alpha=NAN), "alpha"),
        ("map_to_rgba: alpha str", lambda: render.map_to_rgba(np.ones((2, 2)), alpha="0.5"), "alpha"),
        ("map_to_rgba: signed str", lambda: render.map_to_rgba(np.ones((2, 2)), signed="false"), "signed"),
        ("map_to_rgba: alpha_from_value int",
         lambda: render.map_to_rgba(np.ones((2, 2)), alpha_from_value=1), "alpha_from_value"),
        ("map_to_rgba: unknown cmap", lambda: render.map_to_rgba(np.ones((2, 2)), cmap="nope"), "cmap"),
        ("default_cmap: signed str", lambda: render.default_cmap("false"), "signed"),
        ("upsample_bilinear: size wrong shape", lambda: render.upsample_bilinear(np.ones((2, 2)), 4), "size"),
        ("upsample_bilinear: size bool", lambda: render.upsample_bilinear(np.ones((2, 2)), (True, 4)), "size"),
        ("upsample_bilinear: size negative", lambda: render.upsample_bilinear(np.ones((2, 2)), (-1, 4)), "size"),
        ("upsample_bilinear: map wrong shape", lambda: render.upsample_bilinear(np.ones(4), (4, 4)), "map"),
        ("overlay: image wrong dtype", lambda: render.overlay(np.zeros((4, 4, 3)), np.ones((2, 2))), "image"),
        ("overlay: image wrong type", lambda: render.overlay(None, np.ones((2, 2))), "image"),
        ("overlay: map NaN", lambda: render.overlay(GOOD_IMAGE, np.full((2, 2), NAN)), "map"),
        ("overlay: map wrong shape", lambda: render.overlay(GOOD_IMAGE, np.ones((2, 2, 3))), "map"),
        ("overlay: alpha bool", lambda: render.overlay(GOOD_IMAGE, np.ones((2, 2)), alpha=True), "alpha"),
        ("explanation_figure: reading unknown", lambda: render.explanation_figure(exp(), reading="both"), "reading"),
        ("explanation_figure: alpha NaN", lambda: render.explanation_figure(exp(), alpha=NAN), "alpha"),
        ("explanation_figure: cmap unknown", lambda: render.explanation_figure(exp(), cmap="jett"), "cmap"),
        ("explanation_figure: points negative", lambda: render.explanation_figure(exp(), points=-1), "points"),
        ("explanation_figure: points bool", lambda: render.explanation_figure(exp(), points=True), "points"),
        ("explanation_figure: points wrong shape",
         lambda: render.explanation_figure(exp(), points=np.zeros((2, 3))), "points"),
        ("explanation_figure: points NaN", lambda: render.explanation_figure(exp(), points=[(NAN, 3.0)]), "points"),
        ("explanation_figure: point outside", lambda: render.explanation_figure(exp(), points=[(500, 3)]), "points"),
        ("explanation_figure: panel_size negative",
         lambda: render.explanation_figure(exp(), panel_size=-1), "panel_size"),
        ("default_points: count float", lambda: render.default_points(exp(), 2.5), "count"),
        # ---------------------------------------------------------------- evaluate
        ("get_metric: unknown", lambda: evaluate.get_metric("deleton"), "deleton"),
        ("get_metric: name wrong type", lambda: evaluate.get_metric(3), "metric"),
        ("get_metric: unknown option", lambda: evaluate.get_metric("deletion", colour=1), "colour"),
        ("get_metric: steps bool", lambda: evaluate.get_metric("deletion", steps=True), "steps"),
        ("get_metric: steps float", lambda: evaluate.get_metric("deletion", steps=11.0), "steps"),
        ("get_metric: batch_size negative", lambda: evaluate.get_metric("insertion", batch_size=-1), "batch_size"),
        ("get_metric: blur_sigma NaN", lambda: evaluate.get_metric("deletion", blur_sigma=NAN), "blur_sigma"),
        ("get_metric: unknown background", lambda: evaluate.get_metric("deletion", background="pink"), "background"),
        ("get_metric: tolerance negative", lambda: evaluate.get_metric("pointing_game", tolerance=-1), "tolerance"),
        ("get_metric: tolerance str", lambda: evaluate.get_metric("pointing_game", tolerance="1"), "tolerance"),
        ("get_metric: unknown side", lambda: evaluate.get_metric("energy_pointing", side="left"), "side"),
        ("get_metric: unknown unit", lambda: evaluate.get_metric("correspondence_pck", unit="inches"), "unit"),
        ("get_metric: unknown reading", lambda: evaluate.get_metric("correspondence_pck", reading="raw"), "reading"),
        ("get_metric: absolute str", lambda: evaluate.get_metric("sanity_randomization", absolute="false"),
         "absolute"),
        ("get_metric: max_steps zero", lambda: evaluate.get_metric("sanity_randomization", max_steps=0), "max_steps"),
        ("make_metric: wrong type", lambda: evaluate.make_metric(3), "metric"),
        ("list_metrics: unknown category", lambda: evaluate.list_metrics("vibes"), "category"),
        ("metric call: explanation wrong type", lambda: evaluate.get_metric("pointing_game")("map"), "explanation"),
        ("metric call: mask wrong shape",
         lambda: evaluate.get_metric("pointing_game")(exp(), query_mask=np.ones((8, 8), bool)), "query_mask"),
        ("metric call: mask empty",
         lambda: evaluate.get_metric("pointing_game")(exp(), query_mask=np.zeros((64, 64), bool)), "query_mask"),
        ("metric call: mask not binary",
         lambda: evaluate.get_metric("pointing_game")(exp(), query_mask=np.full((64, 64), 0.5)), "query_mask"),
        ("metric call: mask wrong type",
         lambda: evaluate.get_metric("pointing_game")(exp(), query_mask="mask.png"), "query_mask"),
        ("metric call: needs missing", lambda: evaluate.get_metric("pointing_game")(exp()), "pointing_game"),
        ("metric call: mapping not callable",
         lambda: evaluate.get_metric("correspondence_pck")(exp(), mapping=3), "mapping"),
        ("pointing_game: unknown side", lambda: evaluate.pointing_game(exp(), mask, side="both"), "side"),
        ("pointing_game: tolerance NaN", lambda: evaluate.pointing_game(exp(), mask, tolerance=NAN), "tolerance"),
        ("pointing_game: mask wrong shape", lambda: evaluate.pointing_game(exp(), np.ones(64, bool)), "mask"),
        ("energy_pointing: explanation wrong type", lambda: evaluate.energy_pointing("map", mask), "explanation"),
        ("pixel_map: unknown side", lambda: evaluate.pixel_map(exp(), "left"), "side"),
        ("correspondence_rate: unknown unit",
         lambda: evaluate.correspondence_rate(exp(), lambda r, c: (r, c, r == r), unit="mm"), "unit"),
        ("correspondence_rate: tolerance negative",
         lambda: evaluate.correspondence_rate(exp(), lambda r, c: (r, c, r == r), tolerance=-1), "tolerance"),
        ("correspondence_rate: mapping not callable", lambda: evaluate.correspondence_rate(exp(), None), "mapping"),
        ("correspondence_rate: points wrong shape",
         lambda: evaluate.correspondence_rate(exp(), lambda r, c: (r, c, r == r), points=[[1.0]]), "points"),
        ("perturbation_curve: model wrong type", lambda: evaluate.perturbation_curve("tiny", exp()), "model"),
        ("perturbation_curve: unknown mode",
         lambda: evaluate.perturbation_curve(tiny(), tiny_explanation(), mode="remove"), "mode"),
        ("perturbation_curve: steps bool",
         lambda: evaluate.perturbation_curve(tiny(), tiny_explanation(), steps=True), "steps"),
        ("perturbation_curve: batch_size float",
         lambda: evaluate.perturbation_curve(tiny(), tiny_explanation(), batch_size=2.5), "batch_size"),
        ("perturbation_curve: fast str",
         lambda: evaluate.perturbation_curve(tiny(), tiny_explanation(), fast="no"), "fast"),
        ("perturbation_curve: blur_sigma negative",
         lambda: evaluate.perturbation_curve(tiny(), tiny_explanation(), background="blur", blur_sigma=-1),
         "blur_sigma"),
        ("average_curves: empty", lambda: evaluate.average_curves([]), "curves"),
        ("average_curves: wrong type", lambda: evaluate.average_curves([1, 2]), "curves[0]"),
        ("sanity_randomization: unknown randomization",
         lambda: evaluate.sanity_randomization(tiny(), GOOD_IMAGE, GOOD_IMAGE, randomization="shuffle"),
         "randomization"),
        ("sanity_randomization: max_steps bool",
         lambda: evaluate.sanity_randomization(tiny(), GOOD_IMAGE, GOOD_IMAGE, max_steps=True), "max_steps"),
        ("sanity_randomization: layers str",
         lambda: evaluate.sanity_randomization(tiny(), GOOD_IMAGE, GOOD_IMAGE, layers="backbone.0"), "layers"),
        ("sanity_randomization: seed NaN",
         lambda: evaluate.sanity_randomization(tiny(), GOOD_IMAGE, GOOD_IMAGE, seed=NAN), "seed"),
        ("sanity_randomization: unknown method",
         lambda: evaluate.sanity_randomization(tiny(), GOOD_IMAGE, GOOD_IMAGE, "decompositon"), "decompositon"),
        ("compare: model wrong type", lambda: evaluate.compare("tiny", [(GOOD_IMAGE, GOOD_IMAGE)]), "model"),
        ("compare: pairs empty", lambda: evaluate.compare(tiny(), [], ["decomposition"]), "pairs"),
        ("compare: pairs wrong type", lambda: evaluate.compare(tiny(), 3, ["decomposition"]), "pairs"),
        ("compare: pair dict unknown key",
         lambda: evaluate.compare(tiny(), [{"query": GOOD_IMAGE, "reference": GOOD_IMAGE, "maks": mask}]),
         "maks"),
        ("compare: pair mapping not callable",
         lambda: evaluate.compare(tiny(), [{"query": GOOD_IMAGE, "reference": GOOD_IMAGE, "mapping": 3}]),
         "mapping"),
        ("compare: methods empty", lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], []), "methods"),
        ("compare: methods repeated",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["gradcam", "gradcam"]), "methods"),
        ("compare: method wrong type", lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], [3]), "methods"),
        ("compare: unknown method",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["decompositon"]), "decompositon"),
        ("compare: method_options wrong type",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["rise"], method_options=[1]),
         "method_options"),
        ("compare: method option bool for int",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["rise"],
                                  method_options={"rise": {"masks": True}}), "masks"),
        ("compare: errors unknown",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["decomposition"], errors="ignore"),
         "errors"),
        ("compare: show_progress str",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["decomposition"], show_progress="no"),
         "show_progress"),
        ("compare: metrics repeated",
         lambda: evaluate.compare(tiny(), [(GOOD_IMAGE, GOOD_IMAGE)], ["decomposition"], ["deletion", "deletion"]),
         "metrics"),
        ("mask_to_display: wrong shape",
         lambda: evaluate.mask_to_display(np.ones((3, 3), bool), tiny().prepare(GOOD_IMAGE)), "mask"),
        # ---------------------------------------------------------------- attributes
        ("AttributePredictor: names str", lambda: AttributePredictor("ab", 3), "names"),
        ("AttributePredictor: names empty", lambda: AttributePredictor([], 3), "names"),
        ("AttributePredictor: name empty", lambda: AttributePredictor(["a", ""], 3), "names[1]"),
        ("AttributePredictor: name not a str", lambda: AttributePredictor(["a", 3], 3), "names[1]"),
        ("AttributePredictor: names repeated", lambda: AttributePredictor(["a", "a"], 3), "names"),
        ("AttributePredictor: in_channels bool", lambda: AttributePredictor(["a"], True), "in_channels"),
        ("AttributePredictor: in_channels zero", lambda: AttributePredictor(["a"], 0), "in_channels"),
        ("AttributePredictor: kernel_size unknown", lambda: AttributePredictor(["a"], 3, kernel_size=2),
         "kernel_size"),
        ("AttributePredictor: kernel_size float", lambda: AttributePredictor(["a"], 3, kernel_size=1.0),
         "kernel_size"),
        ("AttributePredictor: pooling unknown", lambda: AttributePredictor(["a"], 3, pooling="sum"), "pooling"),
        ("set_prior: NaN", lambda: AttributePredictor(["a", "b"], 3).set_prior([0.5, NAN]), "prior"),
        ("set_prior: wrong shape", lambda: AttributePredictor(["a", "b"], 3).set_prior([0.5]), "prior"),
        ("set_prior: outside [0, 1]", lambda: AttributePredictor(["a", "b"], 3).set_prior([0.5, 2.0]), "prior"),
        ("save: path wrong type", lambda: predictor().save(3), "path"),
        ("load: path empty", lambda: AttributePredictor.load(""), "path"),
        ("explain_attributes: model wrong type",
         lambda: explain_attributes("tiny", predictor(), GOOD_IMAGE, GOOD_IMAGE), "model"),
        ("explain_attributes: predictor wrong type",
         lambda: explain_attributes(tiny(), "pred", GOOD_IMAGE, GOOD_IMAGE), "predictor"),
        ("explain_attributes: sides unknown",
         lambda: explain_attributes(tiny(), predictor(), GOOD_IMAGE, GOOD_IMAGE, sides="left"), "sides"),
        ("explain_attributes: top bool",
         lambda: explain_attributes(tiny(), predictor(), GOOD_IMAGE, GOOD_IMAGE, top=True), "top"),
        ("explain_attributes: weights unknown",
         lambda: explain_attributes(tiny(), predictor(), GOOD_IMAGE, GOOD_IMAGE, weights={"colour": 1}), "weights"),
        ("explain_attributes: weight NaN",
         lambda: explain_attributes(tiny(), predictor(), GOOD_IMAGE, GOOD_IMAGE, weights={"prior": NAN}), "prior"),
        ("explain_attributes: weights wrong type",
         lambda: explain_attributes(tiny(), predictor(), GOOD_IMAGE, GOOD_IMAGE, weights=[1, 1, 1]), "weights"),
        ("explain_attributes: saliency wrong type",
         lambda: explain_attributes(tiny(), predictor(), GOOD_IMAGE, GOOD_IMAGE, saliency=3), "saliency"),
        ("rank_components: agreement unknown",
         lambda: rank_components([1], [1], np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.ones((2, 2)),
                                 np.ones((2, 2)), [0.5], agreement="cosine"), "agreement"),
        ("rank_components: sides unknown",
         lambda: rank_components([1], [1], np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.ones((2, 2)),
                                 np.ones((2, 2)), [0.5], sides="left"), "sides"),
        ("AttributeData: labels wrong shape",
         lambda: AttributeData([GOOD_IMAGE], np.ones((1, 2), bool), ("a",), np.array([0])), "labels"),
        ("AttributeData: labels not binary",
         lambda: AttributeData([GOOD_IMAGE], np.full((1, 1), 0.5), ("a",), np.array([0])), "labels"),
        ("AttributeData: names str", lambda: AttributeData([GOOD_IMAGE], np.ones((1, 1), bool), "a", np.array([0])),
         "names"),
        ("AttributeData: partners out of range",
         lambda: AttributeData([GOOD_IMAGE], np.ones((1, 1), bool), ("a",), np.array([3])), "partners"),
        ("AttributeData: partners float",
         lambda: AttributeData([GOOD_IMAGE], np.ones((1, 1), bool), ("a",), np.array([0.0])), "partners"),
        ("synthetic_attribute_data: wrong items", lambda: synthetic_attribute_data([1]), "pairs[0]"),
        ("synthetic_attribute_data: empty", lambda: synthetic_attribute_data([]), "pairs"),
        ("attributes_from_folders: root wrong type", lambda: attributes_from_folders(3), "root"),
        ("attributes_from_folders: min_images bool", lambda: attributes_from_folders(".", min_images=True),
         "min_images"),
        ("fit_attribute_predictor: data wrong type",
         lambda: fit_attribute_predictor(tiny(), [GOOD_IMAGE], show_progress=False), "data"),
        ("fit_attribute_predictor: epochs float",
         lambda: fit_attribute_predictor(tiny(), _data(), epochs=2.0, show_progress=False), "epochs"),
        ("fit_attribute_predictor: lr negative",
         lambda: fit_attribute_predictor(tiny(), _data(), lr=-1, show_progress=False), "lr"),
        ("fit_attribute_predictor: pooling unknown",
         lambda: fit_attribute_predictor(tiny(), _data(), pooling="sum", show_progress=False), "pooling"),
        ("fit_attribute_predictor: saliency unknown",
         lambda: fit_attribute_predictor(tiny(), _data(), saliency="nope", show_progress=False), "nope"),
        ("fit_attribute_predictor: saliency_weight NaN",
         lambda: fit_attribute_predictor(tiny(), _data(), saliency_weight=NAN, show_progress=False),
         "saliency_weight"),
        ("fit_concept_vectors: regularization zero",
         lambda: fit_concept_vectors(tiny(), _data(), regularization=0), "regularization"),
        # ---------------------------------------------------------------- models
        ("load: unknown model", lambda: load("tiny_tset"), "tiny_tset"),
        ("tiny_test: unknown pooling", lambda: load("tiny_test", pooling="mean"), "pooling"),
        ("tiny_test: seed str", lambda: load("tiny_test", seed="0"), "seed"),
        ("mean_color: size bool", lambda: load("mean_color", size=True), "size"),
        ("synthetic_scenes: weights wrong type", lambda: load("synthetic_scenes", weights=3), "weights"),
        ("train_scene_model: steps negative", lambda: train_scene_model(steps=-1), "steps"),
        ("train_scene_model: lr NaN", lambda: train_scene_model(steps=1, lr=NAN), "lr"),
        ("scene_batch: wrong shape", lambda: scene_batch(np.zeros((2, 8, 8), np.uint8)), "images"),
        ("imagenet_top_k: k zero", lambda: imagenet_top_k(tiny(), GOOD_IMAGE, k=0), "k"),
        # ---------------------------------------------------------------- widgets
        ("PairViewer: explanation wrong type", lambda: PairViewer.from_explanation({"score": 1}), "explanation"),
        ("PairViewer: size bool", lambda: PairViewer.from_explanation(exp(), size=True), "size"),
        ("PairViewer: size float", lambda: PairViewer.from_explanation(exp(), size=200.0), "size"),
        ("PairViewer: alpha NaN", lambda: PairViewer.from_explanation(exp(), alpha=NAN), "alpha"),
        ("PairViewer: alpha str", lambda: PairViewer.from_explanation(exp(), alpha="0.5"), "alpha"),
        ("PairViewer: cmap unknown", lambda: PairViewer.from_explanation(exp(), cmap="jett"), "cmap"),
        ("PairViewer: reading unknown", lambda: PairViewer.from_explanation(exp(), reading="raw"), "reading"),
        ("PairViewer: state wrong type", lambda: PairViewer.from_explanation(exp(), state={}), "state"),
        ("PairViewer: model None", lambda: PairViewer(None, GOOD_IMAGE, GOOD_IMAGE), "model"),
        ("PairViewer: model wrong type", lambda: PairViewer("tiny", GOOD_IMAGE, GOOD_IMAGE), "model"),
        ("PairViewer: unknown method", lambda: PairViewer(tiny(), GOOD_IMAGE, GOOD_IMAGE, method="decompositon"),
         "decompositon"),
        ("PairViewer.hover: row NaN", lambda: _viewer().hover("query", NAN, 3), "row"),
        ("PairViewer.hover: unknown side", lambda: _viewer().hover("left", 3, 3), "source"),
        ("PairViewer.hover: outside", lambda: _viewer().hover("query", 3, 500), "col"),
        ("PairViewer.pin: col str", lambda: _viewer().pin("query", 3, "3"), "col"),
        ("PairViewer.pin: row bool", lambda: _viewer().pin("query", True, 3), "row"),
        ("PairViewer.point_map: row negative", lambda: _viewer().point_map("query", -5, 3), "row"),
        ("PairViewer.method: wrong type", lambda: setattr(_viewer(), "method", 3), "method"),
        ("PairViewer.cmap: unknown", lambda: setattr(_viewer(), "cmap", "jett"), "cmap"),
        ("PairViewer.alpha: out of range", lambda: setattr(_viewer(), "alpha", 1.5), "alpha"),
        ("PairViewer.set_explanation: wrong type", lambda: _viewer().set_explanation("exp"), "explanation"),
        ("PairViewer.set_explanation: inputs wrong type",
         lambda: _viewer().set_explanation(exp(), inputs=[GOOD_IMAGE, GOOD_IMAGE]), "inputs"),
        ("PairViewer.set_pair: no model", lambda: _viewer().set_pair(GOOD_IMAGE, GOOD_IMAGE), "model"),
        ("PairViewer.set_model: None", lambda: _viewer().set_model(None), "model"),
        ("PairViewer.overlay_max_side: negative", lambda: setattr(_viewer(), "overlay_max_side", -1),
         "overlay_max_side"),
        ("HoverState.add_pin: unknown source", lambda: HoverState().add_pin("left", 1, 1), "source"),
        ("HoverState.hover: col inf", lambda: HoverState().hover("query", 1, float("inf")), "col"),
        ("HoverState.remove_pin: index float", lambda: HoverState().remove_pin(0.0), "pin index"),
        ("OverallPanel: explanation wrong type", lambda: OverallPanel("exp"), "explanation"),
        ("OverallPanel: size negative", lambda: OverallPanel(exp(), size=-1), "size"),
        ("OverallPanel: alpha NaN", lambda: OverallPanel(exp(), alpha=NAN), "alpha"),
        ("OverallPanel.chart_position: unknown side", lambda: OverallPanel(exp()).chart_position("left", 1, 1),
         "source"),
        ("AttributePanel: ranking wrong type", lambda: AttributePanel([1, 2]), "ranking"),
        ("AttributePanel: top zero", lambda: AttributePanel(ranking(), top=0), "top"),
        ("AttributePanel: width bool", lambda: AttributePanel(ranking(), width=True), "width"),
        ("AttributePanel: on_select not callable", lambda: AttributePanel(ranking(), on_select=3), "on_select"),
        ("AttributePanel.select: unknown", lambda: AttributePanel(ranking()).select("purple"), "attribute"),
        ("AttributePanel.on_select: remove unknown",
         lambda: AttributePanel(ranking()).on_select(print, remove=True), "callback"),
        ("AttributePanel.on_select: remove str",
         lambda: AttributePanel(ranking()).on_select(print, remove="yes"), "remove"),
        ("PairExplorer: comparison wrong type", lambda: PairExplorer.from_explanation(exp(), comparison="yes"),
         "comparison"),
        ("PairExplorer: attributes wrong type", lambda: PairExplorer.from_explanation(exp(), attributes=3),
         "attributes"),
        ("PairExplorer: panel_size zero", lambda: PairExplorer.from_explanation(exp(), panel_size=0), "panel_size"),
        ("ComparisonSession: model wrong type", lambda: ComparisonSession("tiny"), "model"),
        ("ComparisonSession: background str", lambda: ComparisonSession(tiny(), background="no"), "background"),
        ("ComparisonSession: methods str unknown", lambda: ComparisonSession(tiny(), methods="decompositon"),
         "decompositon"),
        ("ComparisonSession: method_options unknown method",
         lambda: ComparisonSession(tiny(), methods=["gradcam"], method_options={"rise": {}}), "rise"),
        ("ComparisonSession: reserved option",
         lambda: ComparisonSession(tiny(), methods=["rise"], method_options={"rise": {"cancel": None}}), "cancel"),
        ("ComparisonSession: metrics wrong type", lambda: ComparisonSession(tiny(), metrics=3), "metrics"),
        ("ComparisonSession: only a query", lambda: ComparisonSession(tiny(), GOOD_IMAGE), "reference"),
        ("ComparisonSession.ranking: unknown metric",
         lambda: _session().ranking("deleton"), "metric"),
        ("ComparisonSession.result: unknown method", lambda: _session().result("sfam"), "method"),
        ("ComparisonSession.subscribe: not callable", lambda: _session().subscribe(3), "listener"),
        ("ComparisonSession.set_pair: explain_fast_here str",
         lambda: _session().set_pair(GOOD_IMAGE, GOOD_IMAGE, explain_fast_here="no"), "explain_fast_here"),
        ("ComparisonSession.set_pair: mapping not callable",
         lambda: _session().set_pair(GOOD_IMAGE, GOOD_IMAGE, mapping=3), "mapping"),
        ("ComparisonSession.set_pair: mask wrong shape",
         lambda: _session().set_pair(GOOD_IMAGE, GOOD_IMAGE, query_mask=np.ones((3, 3), bool)), "query_mask"),
        ("MethodComparisonPanel: size bool",
         lambda: MethodComparisonPanel(tiny(), GOOD_IMAGE, GOOD_IMAGE, methods=["gradcam"], size=True), "size"),
        ("MethodComparisonPanel: cmap unknown",
         lambda: MethodComparisonPanel(tiny(), GOOD_IMAGE, GOOD_IMAGE, methods=["gradcam"], cmap="jett"), "cmap"),
        ("MethodComparisonPanel: viewer wrong type",
         lambda: MethodComparisonPanel(tiny(), GOOD_IMAGE, GOOD_IMAGE, methods=["gradcam"], viewer="v"), "viewer"),
    ]
    return rows


@lru_cache(maxsize=None)
def _data():
    from simviz_widgets.attributes import AttributeData

    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return AttributeData([image, image[::-1]], np.array([[True], [False]]), ("a",), np.array([1, 0]))


def _viewer():
    from simviz_widgets.widgets import PairViewer

    return PairViewer.from_explanation(explanation(), size=64)


@lru_cache(maxsize=None)
def _session():
    from simviz_widgets.widgets.comparison import ComparisonSession

    return ComparisonSession(tiny(), GOOD_IMAGE, GOOD_IMAGE, methods=["decomposition"], metrics=["deletion"],
                             background=False)


CASES = cases()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("call, name", [pytest.param(call, name, id=label) for label, call, name in CASES])
def test_bad_input_is_refused_with_a_named_simviz_error(call, name):
    with pytest.raises(SimvizError) as info:
        call()
    assert isinstance(info.value, (InputError, InputTypeError)) or "closed" in str(info.value)
    assert name in str(info.value), f"the message does not name {name!r}: {info.value}"


def test_the_table_covers_every_kind_of_bad_input():
    labels = " ".join(label for label, _, _ in CASES)
    for kind in ("wrong type", "bool", "NaN", "negative", "empty", "wrong shape", "unknown"):
        assert labels.count(kind) >= 5, kind
    packages = {"load_photo", "views", "shared_object_pairs", "scene_pairs", "normalize_map", "overlay",
                "upsample_bilinear", "explanation_figure", "get_metric", "compare", "perturbation_curve",
                "AttributePredictor", "explain_attributes", "PairViewer", "OverallPanel", "AttributePanel",
                "MethodComparisonPanel", "ComparisonSession", "PairExplorer"}
    assert all(any(label.startswith(p) for label, _, _ in CASES) for p in packages)


# ------------------------------------------------------------------------------------------------
# nothing the caller passes is modified


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.setflags(write=False)
    return array


def test_array_functions_never_write_to_their_inputs():
    from simviz_widgets import datasets, evaluate, render
    from simviz_widgets.checks import check_array, check_mask

    image = _read_only(np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    values = _read_only(np.random.default_rng(1).normal(size=(4, 5)))
    before = (image.copy(), values.copy())
    render.normalize_map(values)
    render.map_to_rgba(values, alpha_from_value=True)
    render.overlay(image, values)
    render.upsample_bilinear(values, (8, 10))
    for kind in ("mirror", "crop_scale", "rotation", "perspective", "color"):
        datasets.views(image, kind)
    mask = _read_only(np.ones((64, 64), np.uint8))
    shown = evaluate.get_metric("pointing_game")(explanation(), query_mask=mask)
    assert np.isfinite(shown)
    assert check_mask(mask, "mask") is not mask  # a new bool array, the caller's untouched
    assert check_array(values, "values") is values  # checked, not copied
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(values, before[1])


def test_option_dicts_given_to_compare_and_panels_are_not_modified():
    from simviz_widgets.evaluate.compare import check_method_options

    given = {"rise": {"masks": np.int64(10), "seed": 0}}
    snapshot = {k: dict(v) for k, v in given.items()}
    checked = check_method_options(given, ["rise"])
    assert given == snapshot and checked["rise"] is not given["rise"]
    assert type(checked["rise"]["masks"]) is int  # the declaration's canonical value


def test_bool_is_never_read_from_a_string_option():
    """'false' is truthy: an option read with bool() would turn it on. Every flag is declared."""
    from simviz_widgets.evaluate import get_metric

    with pytest.raises(InputTypeError, match="absolute='false' must be True or False"):
        get_metric("sanity_randomization", absolute="false")
    assert get_metric("sanity_randomization", absolute=np.bool_(True)).config["absolute"] is True


def test_torch_inputs_are_refused_like_arrays_where_arrays_are_expected():
    from simviz_widgets.render import normalize_map

    with pytest.raises(SimvizError, match="map"):
        normalize_map(torch.full((2, 2), float("nan")))
