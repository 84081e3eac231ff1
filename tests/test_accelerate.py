"""The ONNX Runtime accelerator of the black-box methods (simviz_widgets/adapters/accelerate.py):
maps equal to eager torch within 1e-4, every fallback path (one warning, never an exception with
'auto'; an error with 'onnx'), the export cache, and concurrent jobs. No timings are asserted
(benchmarks/bench_methods.py measures them)."""

import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import simviz_widgets as sv
from simviz_widgets.adapters import accelerate
from simviz_widgets.adapters.accelerate import AcceleratorError, OnnxEmbedder
from simviz_widgets.checks import InputError
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.images import PreprocessConfig

#: Tests that need ONNX Runtime itself (the fallback tests, the option check and the cache directory
#: do not: the package must behave without it).
needs_ort = pytest.mark.skipif(not accelerate.onnxruntime_available(), reason="onnxruntime not installed")

TOL = 1e-4
FAST_RISE = {"masks": 64, "batch_size": 8, "seed": 1, "show_progress": False}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache directory for the module, so the default model is exported once."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(autouse=True)
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv(accelerate.CACHE_ENV, str(shared_cache))
    accelerate.clear_sessions()
    yield shared_cache
    accelerate.clear_sessions()


def _tiny_images(seed=0, size=64):
    g = np.random.default_rng(seed)
    up = lambda m: np.kron(m, np.ones((size // 8, size // 8, 1)))  # noqa: E731
    return (up(g.random((8, 8, 3))) * 0.7 + g.random((size, size, 3)) * 0.3,
            up(g.random((8, 8, 3))) * 0.7 + g.random((size, size, 3)) * 0.3)


def _max_diff(a, b):
    return float(max(np.abs(a.query_map - b.query_map).max(), np.abs(a.reference_map - b.reference_map).max()))


# ------------------------------------------------------------------------------------------
# Maps equal to eager


@pytest.fixture(scope="module")
def chelsea_pair():
    chelsea = load_photo("chelsea")
    return chelsea, views(chelsea, "mirror").image


@needs_ort
def test_default_model_rise_and_sliding_window_equal_eager(default_model, chelsea_pair):
    q, r = chelsea_pair
    eager = sv.explain(default_model, q, r, method="rise", accelerator="eager", **FAST_RISE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        fast = sv.explain(default_model, q, r, method="rise", accelerator="onnx", **FAST_RISE)
        auto = sv.explain(default_model, q, r, method="rise", **FAST_RISE)  # 'auto' is the default
    assert _max_diff(eager, fast) <= TOL
    np.testing.assert_array_equal(auto.query_map, fast.query_map)
    assert fast.info["forward_passes"].startswith("onnxruntime")
    assert eager.info["forward_passes"].startswith("eager torch")
    np.testing.assert_allclose(fast.info["query"]["mask_scores"], eager.info["query"]["mask_scores"], atol=TOL)

    opts = {"window": 56, "stride": 56, "show_progress": False}
    sw_eager = sv.explain(default_model, q, r, method="sliding_window", accelerator="eager", **opts)
    sw_fast = sv.explain(default_model, q, r, method="sliding_window", accelerator="onnx", **opts)
    assert _max_diff(sw_eager, sw_fast) <= TOL
    assert abs(sw_eager.info["query"]["baseline_score"] - sw_fast.info["query"]["baseline_score"]) <= TOL


@needs_ort
def test_tiny_model_both_sides_equal_eager():
    model = sv.load_model("tiny_test")
    q, r = _tiny_images(3)
    eager = sv.explain(model, q, r, method="rise", both=True, accelerator="eager", **FAST_RISE)
    fast = sv.explain(model, q, r, method="rise", both=True, accelerator="onnx", **FAST_RISE)
    assert _max_diff(eager, fast) <= TOL
    assert fast.reference_map.any()
    # A batch size that does not divide the masks, and the model's own metric.
    eager = sv.explain(model, q, r, method="rise", accelerator="eager", similarity="model",
                       **{**FAST_RISE, "batch_size": 5})
    fast = sv.explain(model, q, r, method="rise", accelerator="onnx", similarity="model",
                      **{**FAST_RISE, "batch_size": 5})
    assert _max_diff(eager, fast) <= TOL


@needs_ort
def test_head_and_normalisation_are_exported():
    """A Linear + BatchNorm1d head and an L2-normalising network: the exported embedding is the
    model's, not just the pooled features."""
    from simviz_widgets.models import TinyEmbeddingNet
    from simviz_widgets.models.tiny import TINY_PREPROCESS

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = TinyEmbeddingNet(pooling="gem", head="linear_bn", seed=4)
            with torch.no_grad():
                self.net.pool.p.fill_(3.0)

        def forward(self, x):
            return nn.functional.normalize(self.net(x), dim=1)

    model = sv.SimilarityModel.wrap(Normalised().eval(), preprocess=TINY_PREPROCESS)
    x = torch.randn(4, 3, 64, 64)
    embed = OnnxEmbedder(model, (64, 64), required=True)
    with torch.no_grad():
        assert (embed(x) - model.embed_tensor(x)).abs().max() <= TOL
    assert embed.backend == "onnxruntime"


# ------------------------------------------------------------------------------------------
# Fallbacks


def _fallback_checks(model, q, r, match, **opts):
    """'auto' warns once and gives exactly the eager result; 'onnx' raises AcceleratorError."""
    opts = {**FAST_RISE, "masks": 16, **opts}
    eager = sv.explain(model, q, r, method="rise", accelerator="eager", **opts)
    with pytest.warns(RuntimeWarning, match=match) as record:
        auto = sv.explain(model, q, r, method="rise", accelerator="auto", **opts)
    assert len([w for w in record if "accelerator not used" in str(w.message)]) == 1
    np.testing.assert_array_equal(auto.query_map, eager.query_map)
    assert auto.info["forward_passes"].startswith("eager torch")
    with pytest.raises(AcceleratorError, match=match):
        sv.explain(model, q, r, method="rise", accelerator="onnx", **opts)


def test_fallback_when_onnxruntime_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    assert not accelerate.onnxruntime_available()
    q, r = _tiny_images(4)
    _fallback_checks(sv.load_model("tiny_test"), q, r, "onnxruntime cannot be imported")


class _Branchy(nn.Module):
    """Python control flow on a tensor's value: a trace would freeze one branch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x):
        f = self.conv(x)
        if f.mean() > 0:
            f = f * 2
        return self.flatten(self.pool(f.relu()))


class _Unexportable(_Branchy):
    """An op the ONNX exporter cannot translate (aten::i0, no ONNX symbolic)."""

    def forward(self, x):
        return self.flatten(self.pool(torch.special.i0(self.conv(x))))


@needs_ort
@pytest.mark.parametrize("net,match", [(_Branchy, "converts a tensor to a Python value"),
                                       (_Unexportable, "torch.onnx.export failed")])
def test_fallback_when_the_model_cannot_be_exported(net, match):
    cfg = PreprocessConfig(input_size=(32, 32), resize_short=None)
    model = sv.SimilarityModel.wrap(net().eval(), preprocess=cfg)
    q, r = _tiny_images(5, size=32)
    _fallback_checks(model, q, r, match)
    assert not model.module.training  # the exporter left the mode alone


def test_fallback_in_any_layer_mode_float64_and_other_devices():
    q, r = _tiny_images(6)
    _fallback_checks(sv.load_model("tiny_test", layer="backbone.2"), q, r, "any-layer mode")
    net = sv.load_model("tiny_test").module.double()
    model = sv.SimilarityModel.wrap(net, preprocess=sv.load_model("tiny_test").preprocess)
    _fallback_checks(model, q, r, "float64")

    class Elsewhere:  # the device check, without a device: a model whose weights live on 'meta'
        decompose_layer = None
        dtype = torch.float32
        name = "elsewhere"
        module = nn.Conv2d(3, 4, 3).to("meta")

    with pytest.raises(AcceleratorError, match=r"on \['meta'\]"):
        OnnxEmbedder(Elsewhere(), (8, 8), required=True).prepare()


@needs_ort
def test_fallback_when_verification_fails(monkeypatch, cache):
    model = sv.load_model("tiny_test", seed=7)
    q, r = _tiny_images(7)
    real = OnnxEmbedder._run_onnx
    monkeypatch.setattr(OnnxEmbedder, "_run_onnx", lambda self, batch: real(self, batch) + 1e-2)
    _fallback_checks(model, q, r, "differs from eager torch")
    key = accelerate.model_key(model, (64, 64))
    assert not (cache / f"{key}.onnx").exists()  # a file that failed is not kept
    # Within tolerance passes.
    accelerate.clear_sessions()
    monkeypatch.setattr(OnnxEmbedder, "_run_onnx", lambda self, batch: real(self, batch) + 1e-6)
    embed = OnnxEmbedder(model, (64, 64), required=True)
    embed(torch.randn(2, 3, 64, 64))
    assert embed.backend == "onnxruntime"


@needs_ort
def test_batches_the_export_does_not_fit_run_eager():
    model = sv.load_model("tiny_test")
    embed = OnnxEmbedder(model, (64, 64), required=True)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = model.embed_tensor(x)
        assert (embed(x) - expected).abs().max() <= TOL
        other = torch.randn(2, 3, 32, 32)  # another size: eager, same as embed_tensor
        assert torch.equal(embed(other), model.embed_tensor(other))
    with pytest.raises(Exception, match="NaN"):  # the eager path's input check still applies
        embed(torch.full((1, 3, 64, 64), float("nan")))


@needs_ort
def test_submit_runs_on_pool_threads_and_reraises_their_errors():
    model = sv.load_model("tiny_test", seed=16)
    embed = OnnxEmbedder(model, (64, 64), required=True)
    x = torch.randn(5, 3, 64, 64)
    first = embed.submit(x).result()  # first use: verified synchronously
    with torch.no_grad():
        assert (first - model.embed_tensor(x)).abs().max() <= TOL
    assert torch.equal(embed.submit(x).result(), first)  # then on pool threads, same numbers

    class Broken:
        def run(self, *args):
            raise RuntimeError("session failed")

    embed._entry = accelerate._Entry(Broken(), "image", embed._entry.path, 1, verified=True)
    with pytest.raises(RuntimeError, match="session failed"):
        embed.submit(x).result()


def test_accelerator_option_is_checked():
    model = sv.load_model("tiny_test")
    q, r = _tiny_images(8)
    with pytest.raises(InputError, match=r"accelerator='gpu' is not one of \['auto', 'onnx', 'eager'\]"):
        sv.explain(model, q, r, method="rise", accelerator="gpu", show_progress=False)
    with pytest.raises(ValueError, match="accelerator"):
        accelerate.embedder(model, (64, 64), "fast")


# ------------------------------------------------------------------------------------------
# Cache


@needs_ort
def test_second_construction_does_not_export_again(monkeypatch, cache):
    calls = []
    real = accelerate.export_embedding

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(accelerate, "export_embedding", counting)
    model = sv.load_model("tiny_test", seed=11)
    x = torch.randn(4, 3, 64, 64)
    first = OnnxEmbedder(model, (64, 64), required=True)
    out = first(x)
    assert len(calls) == 1
    assert (cache / f"{accelerate.model_key(model, (64, 64))}.onnx").exists()
    OnnxEmbedder(model, (64, 64), required=True)(x)  # from memory
    accelerate.clear_sessions()
    again = OnnxEmbedder(model, (64, 64), required=True)  # from the file on disk
    assert torch.equal(again(x), out)
    copy = model.copy(channels_last=True)  # same weights in another layout: same file
    assert accelerate.model_key(copy, (64, 64)) == accelerate.model_key(model, (64, 64))
    OnnxEmbedder(copy, (64, 64), required=True)(x)
    assert len(calls) == 1
    OnnxEmbedder(model, (48, 48), required=True)(torch.randn(1, 3, 48, 48))  # another size: exported
    other = sv.load_model("tiny_test", seed=12)  # other weights: exported
    OnnxEmbedder(other, (64, 64), required=True)(x)
    assert calls == [(64, 64), (48, 48), (64, 64)]


@needs_ort
def test_damaged_cache_file_is_exported_again(cache):
    model = sv.load_model("tiny_test", seed=13)
    path = cache / f"{accelerate.model_key(model, (64, 64))}.onnx"
    path.write_bytes(b"not an onnx model")
    embed = OnnxEmbedder(model, (64, 64), required=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (embed(x) - model.embed_tensor(x)).abs().max() <= TOL
    assert path.stat().st_size > 100


def test_cache_dir_falls_back_to_a_temporary_directory(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(accelerate.CACHE_ENV, str(blocker / "onnx"))  # cannot be created
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert accelerate.cache_dir().parent == tmp_path / "tmp"
    monkeypatch.delenv(accelerate.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert accelerate.cache_dir() == tmp_path / "xdg" / "simviz_widgets" / "onnx"


# ------------------------------------------------------------------------------------------
# Background jobs


@needs_ort
def test_concurrent_jobs_on_model_copies():
    """Each job on its own copy (as the widgets' ModelCopies do); the copies share one session."""
    model = sv.load_model("tiny_test", seed=14)
    q, r = _tiny_images(9)
    expected = sv.explain(model, q, r, method="rise", accelerator="onnx", **FAST_RISE)
    results, errors = {}, []

    def job(k):
        try:
            results[k] = sv.explain(model.copy(), q, r, method="rise", accelerator="onnx", **FAST_RISE)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=job, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    for exp in results.values():
        assert _max_diff(exp, expected) <= 1e-6
    assert len(results) == 3


@needs_ort
def test_first_use_from_several_threads_exports_once(monkeypatch):
    calls = []
    real = accelerate.export_embedding

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(accelerate, "export_embedding", counting)
    model = sv.load_model("tiny_test", seed=15)
    copies = [model.copy() for _ in range(3)]
    x = torch.randn(2, 3, 64, 64)
    outs = [None] * 3

    def work(k):
        outs[k] = OnnxEmbedder(copies[k], (64, 64), required=True)(x)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(calls) == 1
    assert all(torch.allclose(o, outs[0], atol=1e-6) for o in outs)
