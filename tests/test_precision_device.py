"""Half-precision models (float16, bfloat16) and models on any device (docs/models.md, "Dtypes and devices").

Half precision: ``SimilarityModel.wrap`` accepts a half model (the output check's tolerance follows
the dtype) and still refuses one whose forward does work outside modules; every method runs on it;
the decomposition accumulates in float64 and its identities hold to float64 round-off.

Devices: no code path may make a tensor on a device of its own choosing. Two CPU tests catch that:
every method run with torch's default device set to "meta" (a tensor made without following the
model's device lands on meta and fails loudly), and every method run on a model whose tensors report
another device (:class:`Elsewhere`: CPU data behind a "meta" device, with torch's rule that tensors
of two devices never mix). A CUDA test runs where a GPU exists.
"""

import warnings

import numpy as np
import pytest
import torch
import torchvision
from test_methods import _images  # the same blocky random pair as the methods' tests
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

import simviz_widgets as sv
from simviz_widgets.adapters import ModelAdapterError, SimilarityModel
from simviz_widgets.evaluate import deletion_curve, sanity_randomization
from simviz_widgets.explain import get_method, position_contributions
from simviz_widgets.images import PreprocessConfig
from simviz_widgets.models import TinyEmbeddingNet
from simviz_widgets.models.tiny import TINY_PREPROCESS

HALF = [torch.float16, torch.bfloat16]
RESNET_PREPROCESS = PreprocessConfig(input_size=(64, 64), resize_short=None)
PIXEL_METHODS = {"rise", "sliding_window"}




def _fast(method):
    """Options that keep every method quick (and its forward passes eager torch)."""
    options = {
        "rise": {"masks": 8, "grid": 4, "batch_size": 4, "accelerator": "eager"},
        "sliding_window": {"window": 32, "stride": 32, "accelerator": "eager"},
    }.get(method, {})
    if "show_progress" in get_method(method).options:
        options["show_progress"] = False
    return options


def _tiny(dtype=torch.float32, pooling="avg", head="linear", metric="cosine", layer=None):
    net = TinyEmbeddingNet(pooling=pooling, head=head).to(dtype)
    return SimilarityModel.wrap(net, metric=metric, preprocess=TINY_PREPROCESS, layer=layer)


def _resnet(dtype):
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=16).eval().to(dtype)


# ------------------------------------------------------------------------------------------
# Half precision: wrapping


@pytest.mark.parametrize("dtype", HALF)
def test_half_resnet18_is_accepted_and_embeds_like_its_module(dtype):
    net = _resnet(dtype)
    model = SimilarityModel.wrap(net, preprocess=RESNET_PREPROCESS)
    assert (model.pooling.kind, model.head_kind, model.feature_layer) == ("avg", "linear", "layer4")
    assert model.dtype == dtype
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model.embed_tensor(x), net(x.to(dtype))
    assert ours.dtype == dtype
    # The folded head rounds differently from nn.Linear: a few units in the last place of the
    # largest output, never more than the check's 8 eps.
    eps = torch.finfo(dtype).eps
    assert float((ours.float() - theirs.float()).abs().max()) <= 8 * eps * float(theirs.float().abs().max())


class _ExtraWork(nn.Module):
    """A forward that doubles the head's output outside any module: not reproducible from the modules."""

    def __init__(self, factor=2.0):
        super().__init__()
        self.net = TinyEmbeddingNet()
        self.factor = factor

    def forward(self, x):
        return self.factor * self.net.head(self.net.flatten(self.net.pool(self.net.backbone(x))))


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
def test_a_forward_doing_extra_work_gets_the_clear_message_in_every_dtype(dtype):
    with pytest.raises(ModelAdapterError, match="does work outside modules. Pass pooling= and head=") as err:
        SimilarityModel.wrap(_ExtraWork().to(dtype).eval(), preprocess=TINY_PREPROCESS)
    name = str(dtype).replace("torch.", "")
    assert ("tolerance rtol 1e-4, atol 1e-5" if dtype == torch.float32 else f"tolerance 8 {name} eps") in str(err.value)


@pytest.mark.parametrize("dtype", HALF)
def test_small_extra_work_is_not_hidden_by_the_half_tolerance(dtype):
    # 1.25 x the output: 20% of the largest output value, above the tolerance (8 eps: 0.8% for
    # float16, 6.25% for bfloat16), which is set by the measured rounding (at most 1.7 eps).
    with pytest.raises(ModelAdapterError, match="does work outside modules"):
        SimilarityModel.wrap(_ExtraWork(1.25).to(dtype).eval(), preprocess=TINY_PREPROCESS)


def test_float16_overflow_says_so():
    # GeM cubes activations: above 65504 float16 is infinite; the message says that, not "extra work".
    net = TinyEmbeddingNet(pooling="gem", head="linear").half()
    with pytest.raises(ModelAdapterError, match="not finite.*float16"):
        SimilarityModel.wrap(net, preprocess=TINY_PREPROCESS)


# ------------------------------------------------------------------------------------------
# Half precision: explanations


@pytest.mark.parametrize("dtype", HALF)
def test_every_method_runs_on_a_half_model(dtype):
    model = _tiny(dtype)
    q, r = _images()
    expected = model.similarity(q, r)
    full = _every_method(_tiny(torch.float32), q, r)
    for method, exp in _every_method(model, q, r).items():
        assert exp.query_map.shape == full[method].query_map.shape, method
        assert exp.query_map.dtype == np.float32 and np.isfinite(exp.query_map).all(), method
        assert np.isfinite(exp.reference_map).all(), method
        assert np.ptp(exp.query_map) > 0, method
        # The explanation's score is the model's own (half-precision) similarity.
        assert exp.score == pytest.approx(expected, abs=1e-6), method
        # The same weights in float32 give nearly the same maps.
        corr = np.corrcoef(exp.query_map.ravel(), full[method].query_map.ravel())[0, 1]
        assert corr > 0.99, (method, corr)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_half_decomposition_accumulates_in_float64_and_says_so(dtype, metric):
    net = _resnet(dtype)
    model = SimilarityModel.wrap(net, metric=metric, preprocess=RESNET_PREPROCESS)
    q, r = _images(1)
    exp = sv.explain(model, q, r)
    precision = exp.info["precision"]
    assert precision["model_dtype"] == str(dtype).replace("torch.", "")
    assert precision["accumulation"] == "float64"
    # Completeness: D sums to the float64 score of the decomposed embedding to float64 round-off ...
    total = float(exp.point_to_point.matrix().astype(np.float64).sum())
    natural = precision["natural_scale"]
    assert abs(total - precision["decomposed_score"]) <= 1e-9 * natural
    assert exp.completeness_error < 1e-9
    # ... and that score differs from the model's own one by the model's rounding only.
    assert exp.score == pytest.approx(model.similarity(q, r), abs=0, rel=0)
    assert precision["model_rounding"] == pytest.approx(abs(exp.score - precision["decomposed_score"]) / natural)
    assert precision["model_rounding"] <= 64 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", HALF)
def test_half_maps_match_the_float32_model_to_half_rounding(dtype):
    q, r = _images(2)
    full = sv.explain(_tiny(torch.float32), q, r)
    half = sv.explain(_tiny(dtype), q, r)
    eps = torch.finfo(dtype).eps
    scale = np.abs(full.query_map).max()
    # Weights and activations rounded to the half dtype: the maps move by a few eps of their scale.
    np.testing.assert_allclose(half.query_map, full.query_map, atol=32 * eps * scale)
    assert half.score == pytest.approx(full.score, abs=32 * eps)
    assert full.info["precision"]["model_dtype"] == "float32" and full.info["precision"]["model_rounding"] == 0
    assert half.info["precision"]["model_rounding"] > 0  # the half model's own score is rounded


@pytest.mark.parametrize("dtype", HALF)
def test_any_layer_mode_on_a_half_model(dtype):
    model = _tiny(dtype, layer="backbone.2")
    q, r = _images(3)
    exp = sv.explain(model, q, r, show_progress=False)
    assert exp.info["mode"] == "gradient x input"
    assert exp.info["precision"]["accumulation"] == "float64"
    assert exp.info["precision"]["gradient_products"] == str(dtype).replace("torch.", "")
    assert exp.completeness_error < 1e-9  # with bias=True the residual is spread: exact in float64
    # Forward and backward mode give the same vectors to the dtype's rounding (the tangent batch is
    # checked against torch.func at 16 eps, not at float32's 1e-4, and kept).
    x = model.prepare(q).tensor
    forward = position_contributions(model, x, mode="forward", show_progress=False)
    backward = position_contributions(model, x, mode="backward", show_progress=False)
    assert forward["engine"] == "tangent batch"
    scale = float(backward["E"].abs().max())
    assert float((forward["E"] - backward["E"]).abs().max()) <= 16 * torch.finfo(dtype).eps * scale


# ------------------------------------------------------------------------------------------
# Devices: nothing may make a tensor on a device of its own choosing


def _every_method(model, q, r):
    """Every registered method's explanation (methods that refuse the model's pooling left out)."""
    results = {}
    for method in sv.list_methods():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                results[method] = sv.explain(model, q, r, method=method, **_fast(method))
            except sv.InputError as err:
                assert "needs a global pooling" in str(err)  # sfam, similarity_map on flattened heads
    return results


def _assert_same(results, reference, atol=1e-6):
    assert results.keys() == reference.keys()
    for method, exp in results.items():
        ref = reference[method]
        assert isinstance(exp.query_map, np.ndarray) and isinstance(exp.reference_map, np.ndarray)
        np.testing.assert_allclose(exp.query_map, ref.query_map, atol=atol, rtol=1e-5, err_msg=method)
        np.testing.assert_allclose(exp.reference_map, ref.reference_map, atol=atol, rtol=1e-5, err_msg=method)
        assert exp.score == pytest.approx(ref.score, abs=atol), method
        if ref.point_to_point is not None:
            np.testing.assert_allclose(exp.point_to_point.matrix(), ref.point_to_point.matrix(),
                                       atol=atol, rtol=1e-5, err_msg=method)


# Pooling, head and metric combinations that take different code paths (identity / folded / generic
# heads, max and GeM weights, flattened heads, the Euclidean factors), and the any-layer mode.
CONFIGS = [("avg", "linear", "cosine", None), ("max", "identity", "euclidean", None), ("gem", "bn", "dot", None),
           ("flatten", "flat_linear", "euclidean", None), ("avg", "linear", "cosine", "backbone.2")]


@pytest.mark.parametrize("pooling,head,metric,layer", CONFIGS + [("avg", "mlp", "cosine", None)])
def test_no_tensor_is_made_on_the_default_device(pooling, head, metric, layer):
    model = _tiny(torch.float32, pooling, head, metric, layer)
    q, r = _images(4)
    reference = _every_method(model, q, r)
    x = model.prepare(q).tensor
    modes = ("forward", "backward") if layer else ("auto",)
    # On a twin (another module): ``model``'s first forward-mode run, under meta below, then checks
    # the tangent batch against torch.func (once per network), so both paths run there.
    twin = _tiny(torch.float32, pooling, head, metric, layer)
    vectors = [position_contributions(twin, x, mode=mode, show_progress=False)["E"] for mode in modes]
    with torch.device("meta"):  # a tensor made without following the model's device lands here
        results = _every_method(model, q, r)
        copy = model.copy()
        assert copy.device.type == "cpu"
        if (pooling, head, metric, layer) == CONFIGS[0]:  # the evaluations: once (time)
            curve = deletion_curve(model, results["decomposition"], steps=5, show_progress=False)
            sanity = sanity_randomization(model, q, r, max_steps=2, show_progress=False)
            assert np.isfinite(curve.scores).all() and np.isfinite(sanity.correlations).all()
        for mode, expected in zip(modes, vectors):  # the any-layer mode's forward (tangent) path too
            found = position_contributions(model, x, mode=mode, show_progress=False)
            assert found["E"].device.type == "cpu"
            if mode == "forward":
                assert found["engine"] == "tangent batch" and not found["notes"][1:]  # no fallback
            torch.testing.assert_close(found["E"], expected)
    _assert_same(results, reference)


# A second device on a CPU-only machine: tensors whose data live on the CPU but which report the
# device "meta", computed by the CPU kernels (a __torch_dispatch__ wrapper). Mixing one with a plain
# CPU tensor (more than a scalar) raises torch's own device-mismatch error, as CUDA would; .numpy()
# needs .cpu() first, as on CUDA. Factory calls asking for the device (device=model.device) make
# such tensors (the mode below), so code that follows the model's device works unchanged.
OTHER = torch.device("meta")


class Elsewhere(torch.Tensor):
    @staticmethod
    def __new__(cls, data):
        self = torch.Tensor._make_wrapper_subclass(
            cls, data.shape, strides=data.stride(), storage_offset=data.storage_offset(), dtype=data.dtype,
            device=OTHER, requires_grad=data.requires_grad)
        self.cpu_data = data
        return self

    def __repr__(self):
        return f"Elsewhere({self.cpu_data!r})"

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run_elsewhere(func, args, kwargs or {})


def _target_device(args, kwargs):
    """The device an op is asked to make or move tensors to (keyword or positional), else None."""
    devices = [a for a in args if isinstance(a, torch.device)]
    if kwargs.get("device") is not None:
        devices.append(torch.device(kwargs["device"]))
    return devices[0] if devices else None


def _run_elsewhere(func, args, kwargs):
    seen, plain = [], []

    def unwrap(t):
        if isinstance(t, Elsewhere):
            seen.append(t)
            return t.cpu_data
        if isinstance(t, torch.Tensor):
            plain.append(t)
        if isinstance(t, torch.device) and t.type == OTHER.type:
            return torch.device("cpu")
        return t

    target = _target_device(args, kwargs)
    args, kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
    to_other = target is not None and target.type == OTHER.type
    if to_other and kwargs.get("device") is not None:  # a keyword device may be a string
        kwargs["device"] = torch.device("cpu")
    moving = func.__name__.startswith(("_to_copy", "copy_", "to.", "_copy_from"))
    if not moving and [t for t in plain if t.ndim > 0]:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                           f"devices, {OTHER.type} and cpu! ({func})")
    out = func(*args, **kwargs)
    if func.__name__.startswith("_local_scalar_dense"):  # float(t), t.item(): a Python number, as on CUDA
        return out
    leaving = moving and target is not None and not to_other
    if (seen and not leaving) or to_other:
        return tree_map(lambda t: Elsewhere(t) if type(t) is torch.Tensor else t, out)
    return out


class MakeElsewhere(TorchDispatchMode):
    """Factory calls and .to() asking for the other device give Elsewhere tensors."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _target_device(args, kwargs)
        if any(issubclass(t, Elsewhere) for t in types) or (target is not None and target.type == OTHER.type):
            return _run_elsewhere(func, args, kwargs)
        return func(*args, **kwargs)


def _move_elsewhere(module: nn.Module) -> nn.Module:
    for m in module.modules():
        for key, p in m._parameters.items():
            if p is not None:
                m._parameters[key] = nn.Parameter(Elsewhere(p.detach().clone()), requires_grad=p.requires_grad)
        for key, b in m._buffers.items():
            if b is not None:
                m._buffers[key] = Elsewhere(b.clone())
    return module


def test_the_other_device_catches_a_tensor_made_on_the_cpu():
    # The harness itself: a hard-coded CPU tensor meeting the model's is an error, as on a GPU.
    with MakeElsewhere():
        x = torch.zeros(3, device=OTHER)
        assert isinstance(x, Elsewhere) and x.device == OTHER
        assert isinstance(x + torch.tensor(1.0), Elsewhere)  # a 0-d CPU scalar mixes, as on CUDA
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(3)
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(3, device="cpu")
        assert type(x.cpu()) is torch.Tensor and float(x.sum()) == 0.0


# Generic (MLP) heads are linearised with torch.func.jacrev, whose vmap does not take this
# Python-level device; the default-device test above covers them.
@pytest.mark.parametrize("pooling,head,metric,layer", CONFIGS)
def test_every_method_follows_a_model_on_another_device(pooling, head, metric, layer):
    q, r = _images(5)
    reference = _every_method(_tiny(torch.float32, pooling, head, metric, layer), q, r)
    with MakeElsewhere():
        net = _move_elsewhere(TinyEmbeddingNet(pooling=pooling, head=head))
        model = SimilarityModel.wrap(net, metric=metric, preprocess=TINY_PREPROCESS, layer=layer)
        assert model.device == OTHER
        results = _every_method(model, q, r)
        copy = model.copy()  # background jobs' copies stay on the model's device
        assert copy.device == OTHER and isinstance(next(copy.module.parameters()), Elsewhere)
        if (pooling, head, metric, layer) == CONFIGS[0]:  # the evaluations: once (time)
            curve = deletion_curve(model, results["decomposition"], steps=5, show_progress=False)
            sanity = sanity_randomization(model, q, r, max_steps=2, show_progress=False)
            assert np.isfinite(curve.scores).all() and np.isfinite(sanity.correlations).all()
    _assert_same(results, reference)
    for exp in results.values():
        assert type(exp.query_map) is np.ndarray and type(exp.reference_map) is np.ndarray


def test_the_onnx_accelerator_is_skipped_with_a_note_for_another_device():
    q, r = _images(6)
    with MakeElsewhere():
        model = SimilarityModel.wrap(_move_elsewhere(TinyEmbeddingNet()), preprocess=TINY_PREPROCESS)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # skipped quietly: eager torch is the right path there
            exp = sv.explain(model, q, r, method="sliding_window", window=32, stride=32, show_progress=False)
    assert exp.info["forward_passes"] == "eager torch (the model is on ['meta']; the accelerator runs on the CPU only)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: no GPU here")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_every_method_on_a_cuda_model(dtype):
    q, r = _images(7)
    reference = _every_method(_tiny(dtype), q, r)
    model = SimilarityModel.wrap(TinyEmbeddingNet().to(dtype).cuda(), preprocess=TINY_PREPROCESS)
    assert model.device.type == "cuda"
    results = _every_method(model, q, r)
    assert model.copy().device.type == "cuda"
    # Other kernels, other rounding: float32 agrees to ~1e-5, float16 to its own rounding.
    _assert_same(results, reference, atol=1e-4 if dtype == torch.float32 else 5e-2)


# ------------------------------------------------------------------------------------------
# Attribute explanations (SANE, simviz_widgets/attributes): the same rules


def _scene_net():
    from simviz_widgets.models.synthetic import SceneEmbeddingNet

    return SceneEmbeddingNet(width=16, dim=8, seed=1).eval()


def _scene_model(net):
    from simviz_widgets.models.synthetic import SCENE_PREPROCESS

    return SimilarityModel.wrap(net, preprocess=SCENE_PREPROCESS, name="scenes_random")


@pytest.fixture(scope="module")
def attribute_data():
    from simviz_widgets.attributes import synthetic_attribute_data
    from simviz_widgets.datasets.synthetic import scene_pairs

    # 24 pairs: every attribute is on some images and off others (the concept probes need both);
    # 3 pairs for the per-image saliency path (one explain() per image).
    return (synthetic_attribute_data(scene_pairs(24, seed=4)), synthetic_attribute_data(scene_pairs(3, seed=5)),
            scene_pairs(1, seed=9)[0])


def _given_predictor():
    """The user's own predictor, on the CPU (made before any default-device change)."""
    from simviz_widgets.attributes import AttributePredictor
    from simviz_widgets.datasets.synthetic import SYNTHETIC_ATTRIBUTES

    torch.manual_seed(3)
    predictor = AttributePredictor(SYNTHETIC_ATTRIBUTES, 16, kernel_size=3).eval()
    predictor.set_prior(np.linspace(0.1, 0.9, len(SYNTHETIC_ATTRIBUTES)))
    return predictor


def _attribute_pipeline(model, data, pair, predictor):
    """Fit (batched saliency, and the per-image explain() path on ``small``), concept vectors and
    prior, predict and rank with the fitted predictor and with the user's ``predictor``."""
    from simviz_widgets.attributes import explain_attributes, fit_attribute_predictor, fit_concept_vectors

    data, small = data
    fitted = fit_attribute_predictor(model, data, epochs=3, saliency_weight=5.0, show_progress=False)
    per_image = fit_attribute_predictor(model, small, epochs=3, saliency_weight=5.0, saliency_options={"bias": True},
                                        show_progress=False)
    concepts = fit_concept_vectors(model, data)
    fitted.set_prior(concepts.prior)
    pair_images = [pair.query.image, pair.reference.image]
    out = {"fitted": fitted, "per_image": per_image, "concepts": concepts,
           "predict": fitted.predict(model, pair_images),
           "ranking": explain_attributes(model, fitted, *pair_images),
           "given_predict": predictor.predict(model, pair_images),
           "given_ranking": explain_attributes(model, predictor, *pair_images)}
    return out


def _cpu_state(predictor):
    return {k: v.cpu() for k, v in predictor.state_dict().items()}


def _assert_same_attributes(found, expected, atol=1e-5):
    for name in ("fitted", "per_image"):
        for key, value in _cpu_state(expected[name]).items():
            torch.testing.assert_close(_cpu_state(found[name])[key], value, atol=atol, rtol=1e-4, msg=f"{name} {key}")
    for field in ("vectors", "probe_accuracy", "prior", "pairs_used"):
        np.testing.assert_allclose(getattr(found["concepts"], field), getattr(expected["concepts"], field),
                                   atol=atol, err_msg=field)
    for name in ("predict", "given_predict"):
        for key in ("confidence", "maps"):
            value = found[name][key]
            assert type(value) is np.ndarray and value.dtype == np.float32, (name, key)
            np.testing.assert_allclose(value, expected[name][key], atol=atol, err_msg=f"{name} {key}")
    for name in ("ranking", "given_ranking"):
        assert found[name].attributes == expected[name].attributes, name
        for a, b in zip(found[name], expected[name]):
            assert a.score == pytest.approx(b.score, abs=atol), (name, a.attribute)
            assert type(a.query_map) is np.ndarray and a.query_map.dtype == np.float32
            np.testing.assert_allclose(a.query_map, b.query_map, atol=atol)
            np.testing.assert_allclose(a.reference_map, b.reference_map, atol=atol)


def test_attribute_pipeline_makes_no_tensor_on_the_default_device(attribute_data, tmp_path):
    from simviz_widgets.attributes import AttributePredictor

    *data, pair = attribute_data
    model = _scene_model(_scene_net())
    given = _given_predictor()
    reference = _attribute_pipeline(model, data, pair, given)
    with torch.device("meta"):  # a tensor made without following the data lands here
        found = _attribute_pipeline(model, data, pair, given)
        # The fitted predictor lives with the features (the model's device, CPU here), prior included;
        # a loaded one is made on the CPU, where the file is read.
        assert {p.device.type for p in found["fitted"].state_dict().values()} == {"cpu"}
        found["fitted"].save(tmp_path / "pred.pt")
        back = AttributePredictor.load(tmp_path / "pred.pt")
        assert {p.device.type for p in back.state_dict().values()} == {"cpu"}
    for key, value in back.state_dict().items():
        assert torch.equal(value, found["fitted"].state_dict()[key]), key
    _assert_same_attributes(found, reference, atol=1e-6)


def test_attribute_pipeline_follows_a_model_on_another_device(attribute_data, tmp_path):
    from simviz_widgets.attributes import AttributePredictor

    *data, pair = attribute_data
    given = _given_predictor()  # the user's predictor, on the CPU
    reference = _attribute_pipeline(_scene_model(_scene_net()), data, pair, given)
    before = {k: v.clone() for k, v in given.state_dict().items()}
    with MakeElsewhere():
        model = _scene_model(_move_elsewhere(_scene_net()))
        assert model.device == OTHER
        found = _attribute_pipeline(model, data, pair, given)
        # Trained where the features are: the fitted predictor is on the model's device ...
        assert next(found["fitted"].parameters()).device == OTHER
        # ... and saves to a file that loads on the CPU.
        found["fitted"].save(tmp_path / "pred.pt")
    back = AttributePredictor.load(tmp_path / "pred.pt")
    for key, value in _cpu_state(found["fitted"]).items():
        assert type(back.state_dict()[key]) is torch.Tensor and torch.equal(back.state_dict()[key], value)
    # The user's predictor ran where its weights are, moved nowhere and unchanged.
    for key, value in given.state_dict().items():
        assert type(value) is torch.Tensor and value.device.type == "cpu" and torch.equal(value, before[key])
    _assert_same_attributes(found, reference)


@pytest.mark.parametrize("dtype", HALF)
def test_attribute_pipeline_on_a_half_model(attribute_data, dtype):
    *data, pair = attribute_data
    given = _given_predictor()
    reference = _attribute_pipeline(_scene_model(_scene_net()), data, pair, given)
    model = _scene_model(_scene_net().to(dtype))
    assert model.dtype == dtype
    found = _attribute_pipeline(model, data, pair, given)
    # The head trains in float32 on the half features: float32 weights, results float32 CPU numpy.
    assert {v.dtype for v in found["fitted"].state_dict().values() if v.is_floating_point()} == {torch.float32}
    eps = torch.finfo(dtype).eps
    # The features are the float32 model's rounded to the half dtype. Measured (tiny scene net, 3
    # epochs): the trained weights move by at most 4.2 eps, confidences and maps by 0.01 eps.
    for name in ("fitted", "per_image"):
        for key, value in _cpu_state(reference[name]).items():
            if key != "prior":
                torch.testing.assert_close(_cpu_state(found[name])[key], value, atol=8 * eps, rtol=0, msg=key)
    for name in ("predict", "given_predict"):
        for key in ("confidence", "maps"):
            value = found[name][key]
            assert type(value) is np.ndarray and value.dtype == np.float32 and np.isfinite(value).all()
            np.testing.assert_allclose(value, reference[name][key], atol=eps, rtol=0)
    # The probes fit on rounded pooled features: nearly the same CAVs (cosine >= 0.992 measured), and
    # a pair whose derivative is near 0 may change sign (measured: at most 2 pairs of an attribute).
    found_cv, ref_cv = found["concepts"], reference["concepts"]
    assert (found_cv.vectors * ref_cv.vectors).sum(1).min() > 0.98
    np.testing.assert_array_equal(found_cv.pairs_used, ref_cv.pairs_used)
    assert (np.abs(found_cv.prior - ref_cv.prior) * ref_cv.pairs_used).max() <= 3 + 1e-6
    for name in ("ranking", "given_ranking"):
        found_scores = {s.attribute: s for s in found[name]}
        for s in reference[name]:
            got = found_scores[s.attribute]
            for component in ("confidence", "agreement"):
                assert got.components[component] == pytest.approx(s.components[component], abs=eps), (name, component)
            assert got.query_map.dtype == np.float32
            np.testing.assert_allclose(got.query_map, s.query_map, atol=eps, rtol=0)
    # The user's predictor carries its own prior: the same ranking as the float32 model's.
    assert found["given_ranking"].attributes == reference["given_ranking"].attributes


def test_an_attribute_predictor_is_made_on_the_device_asked_for():
    from simviz_widgets.attributes import AttributePredictor

    with torch.device("meta"):
        assert AttributePredictor(("a", "b"), 4).conv.weight.device.type == "meta"  # torch's default
        made = AttributePredictor(("a", "b"), 4, device="cpu")
        assert {v.device.type for v in made.state_dict().values()} == {"cpu"}
        made.set_prior([0.25, 0.75])  # the prior is copied onto the predictor's device
    assert made.prior.tolist() == [0.25, 0.75]
    with pytest.raises(sv.InputTypeError, match="device must be a torch.device or device name"):
        AttributePredictor(("a", "b"), 4, device=3)
