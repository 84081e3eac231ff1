"""Your own model: ``load("timm:NAME"|"torchvision:NAME", weights=FILE)`` and TorchScript files.

Ground truth throughout is the network itself: the loaded model's embedding must equal the
original module's output on the same batch, and the decomposition of a scripted network must
equal the decomposition of the Python network it was scripted from.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

import simviz_widgets as sv
from simviz_widgets.adapters.scripted import CompiledBlock, python_view
from simviz_widgets.checks import InputError
from simviz_widgets.datasets import load_photo
from simviz_widgets.models import TinyEmbeddingNet, load
from simviz_widgets.models.tiny import TINY_PREPROCESS

SMALL = {"input_size": 64, "resize_short": 64}  # fast: resnet18 at 64 px has a 2 x 2 grid


def _batch(size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _seeded(build, seed: int) -> nn.Module:
    """``build()`` under ``seed`` (the architecture's own initialisation), with seeded BatchNorm
    statistics and affine terms (the defaults 0 / 1 would let a model that skipped them match)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.normal_(1.0, 0.1)
                    m.bias.normal_(0.0, 0.1)
    return module.eval()


@pytest.fixture(scope="module")
def timm_net():
    return _seeded(lambda: timm.create_model("test_resnet", pretrained=False), seed=3)


@pytest.fixture(scope="module")
def resnet18():
    return _seeded(lambda: torchvision.models.get_model("resnet18", weights=None), seed=4)


@pytest.fixture(scope="module")
def resnet18_file(resnet18, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(resnet18.state_dict(), path)
    return path


@pytest.fixture()
def saved(tmp_path):
    def save(obj, name="w.pth"):
        path = tmp_path / name
        torch.save(obj, path)
        return path

    return save


# -- timm: / torchvision: with a weights file ------------------------------------------------


def test_timm_weights_round_trip_and_pretrained_cfg_preprocessing(timm_net, saved):
    model = load("timm:test_resnet", weights=saved(timm_net.state_dict()))
    x = model._probe_input()
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), timm_net(x), rtol=0, atol=1e-6)
    cfg = timm_net.pretrained_cfg
    assert model.preprocess.input_size == tuple(cfg["input_size"][1:])
    assert model.preprocess.mean == pytest.approx(cfg["mean"]) and model.preprocess.std == pytest.approx(cfg["std"])
    assert model.preprocess.interpolation == cfg["interpolation"]
    assert model.name == "timm:test_resnet"
    assert model.module is not timm_net and model.module.training is False


def test_without_weights_the_model_is_random_and_says_so(timm_net):
    with pytest.warns(UserWarning, match="timm:test_resnet has random weights"):
        model = load("timm:test_resnet", preprocess=SMALL)
    x = _batch()
    with torch.no_grad():
        assert not torch.allclose(model.module(x), timm_net(x), atol=1e-3)


def test_torchvision_weights_round_trip_options_pass_through(resnet18, resnet18_file):
    model = load("torchvision:resnet18", weights=resnet18_file, preprocess=SMALL, metric="dot", layer="layer3")
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), resnet18(x), rtol=0, atol=1e-5)
    assert (model.metric, model.decompose_layer, model.preprocess.input_size) == ("dot", "layer3", (64, 64))
    pooled = load("torchvision:resnet18", weights=resnet18_file, preprocess=SMALL, head="identity")
    with torch.no_grad():
        trunk = nn.Sequential(*list(resnet18.children())[:-1])  # everything up to avgpool
        assert torch.allclose(pooled.embed_tensor(x), trunk(x).flatten(1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["resnet18", "inception_v3", "efficientnet_b3"])
def test_torchvision_default_preprocessing_is_its_evaluation_transform(arch):
    from torchvision.models import get_model_weights

    from simviz_widgets.models.external import _torchvision_preprocess

    transform = get_model_weights(arch).DEFAULT.transforms()
    cfg = _torchvision_preprocess(arch)
    assert cfg.input_size == (transform.crop_size[0],) * 2
    assert cfg.resize_short == transform.resize_size[0]
    assert cfg.interpolation == transform.interpolation.value
    assert cfg.mean == pytest.approx(transform.mean) and cfg.std == pytest.approx(transform.std)


def test_checkpoint_wrapper_and_module_prefix_are_handled_and_logged(timm_net, saved, caplog):
    state = {"module." + k: v for k, v in timm_net.state_dict().items()}
    path = saved({"epoch": 7, "optimizer": {"lr": 0.1}, "state_dict": state})
    with caplog.at_level(logging.INFO, logger="simviz_widgets"):
        model = load("timm:test_resnet", weights=path, preprocess=SMALL)
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), timm_net(x), rtol=0, atol=1e-6)
    assert "took the checkpoint's 'state_dict' entry" in caplog.text
    assert "removed the prefix 'module.' from every key" in caplog.text
    compiled = {"_orig_mod." + k: v for k, v in timm_net.state_dict().items()}  # torch.compile's prefix
    again = load("timm:test_resnet", weights=saved({"model": compiled}, "c.pth"), preprocess=SMALL)
    with torch.no_grad():
        assert torch.allclose(again.embed_tensor(x), timm_net(x), rtol=0, atol=1e-6)


def test_safetensors_weights_file(timm_net, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in timm_net.state_dict().items()}, str(path))
    model = load("timm:test_resnet", weights=path, preprocess=SMALL)
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), timm_net(x), rtol=0, atol=1e-6)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match=r"model\.safetensors' could not be read"):
        load("timm:test_resnet", weights=path, preprocess=SMALL)


def test_renamed_and_missing_keys_are_named_with_their_nearest(timm_net, saved):
    state = dict(timm_net.state_dict())
    state["fc.weights"] = state.pop("fc.weight")  # renamed
    del state["layer2.0.bn1.running_var"]  # missing
    with pytest.raises(InputError) as info:
        load("timm:test_resnet", weights=saved(state), preprocess=SMALL)
    message = str(info.value)
    assert "does not fit timm:test_resnet" in message and "\n" not in message
    assert "'fc.weight' (nearest in the file: 'fc.weights')" in message
    assert "'fc.weights' (nearest in the model: 'fc.weight')" in message
    assert "'layer2.0.bn1.running_var' (nearest in the file: 'layer2.0.bn1.running_mean')" in message
    assert "2 missing key(s)" in message and "1 unexpected key(s)" in message


def test_shape_mismatch_names_both_shapes(timm_net, saved):
    state = dict(timm_net.state_dict())
    state["conv1.0.weight"] = torch.zeros(16, 3, 5, 5)
    with pytest.raises(InputError, match=r"'conv1\.0\.weight' file \(16, 3, 5, 5\) vs model \(16, 3, 3, 3\)"):
        load("timm:test_resnet", weights=saved(state), preprocess=SMALL)


def test_non_finite_weights_are_refused(timm_net, saved):
    state = dict(timm_net.state_dict())
    state["fc.bias"] = state["fc.bias"].clone()
    state["fc.bias"][3] = float("nan")
    with pytest.raises(InputError, match=r"'fc\.bias' hold NaN or infinite values"):
        load("timm:test_resnet", weights=saved(state), preprocess=SMALL)


def test_classifier_of_another_size_or_none_is_fitted(saved, caplog):
    ten = _seeded(lambda: timm.create_model("test_resnet", pretrained=False, num_classes=10), seed=5)
    with caplog.at_level(logging.INFO, logger="simviz_widgets"):
        model = load("timm:test_resnet", weights=saved(ten.state_dict()), preprocess=SMALL)
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), ten(x), rtol=0, atol=1e-6)
    assert "num_classes=10" in caplog.text
    headless = {k: v for k, v in ten.state_dict().items() if not k.startswith("fc.")}
    features = load("timm:test_resnet", weights=saved(headless, "h.pth"), preprocess=SMALL)
    assert features.head_kind == "identity"
    with torch.no_grad():
        pooled = ten.forward_head(ten.forward_features(x), pre_logits=True)
        assert torch.allclose(features.embed_tensor(x), pooled, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, fragments", [
    ("timm:resnet5", ["timm has no architecture 'resnet5'", "'resnet50'"]),
    ("torchvision:resnet5", ["torchvision has no architecture 'resnet5'", "'resnet50'"]),
    ("efficientnet_lite", ["'efficientnet_lite' is not registered", "Did you mean 'efficientnet_lite0'",
                           "'timm:NAME'"]),
])
def test_unknown_names_list_close_names(name, fragments):
    with pytest.raises(InputError) as info:
        load(name)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_wrong_files_say_what_to_do(timm_net, saved, tmp_path):
    state_path = saved(timm_net.state_dict(), "state.pt")
    with pytest.raises(InputError, match=r"not a TorchScript file.*timm:NAME --weights"):
        load(state_path)  # a state dict given as the model
    whole = saved(timm_net, "whole.pt")
    with pytest.raises(InputError, match=r"pickled Python objects.*state_dict\(\)"):
        load("timm:test_resnet", weights=whole)
    scripted = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(TinyEmbeddingNet()), scripted)
    with pytest.raises(InputError, match="is a TorchScript model"):
        load("timm:test_resnet", weights=scripted)
    with pytest.raises(InputError, match="holds its own"):
        load(scripted, weights=state_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load("timm:test_resnet", weights=tmp_path / "missing.pth")


# -- TorchScript ------------------------------------------------------------------------------


def _saved_script(net: nn.Module, path, how: str, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks torch.jit as deprecated
        scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
        torch.jit.save(scripted, str(path))
        return torch.jit.load(str(path))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_resnet18_embeds_and_decomposes_like_the_python_network(resnet18, how, tmp_path):
    x = _batch()
    path = tmp_path / f"resnet18_{how}.pt"
    reloaded = _saved_script(resnet18, path, how, x)
    model = sv.load_model(str(path), preprocess=SMALL)
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), reloaded(x), rtol=0, atol=1e-5)
    assert (model.feature_layer, model.pooling.kind, model.head_kind) == ("layer4", "avg", "linear")
    assert model.name == path.name

    python = sv.SimilarityModel.wrap(copy.deepcopy(resnet18), preprocess=SMALL)
    cat = load_photo("chelsea")
    ours, theirs = sv.explain(model, cat, cat[:, ::-1]), sv.explain(python, cat, cat[:, ::-1])
    assert ours.score == pytest.approx(theirs.score, abs=1e-5)
    assert ours.completeness_error < 1e-5
    np.testing.assert_allclose(ours.query_map, theirs.query_map, atol=1e-5)
    np.testing.assert_allclose(ours.reference_map, theirs.reference_map, atol=1e-5)

    # Earlier layers are visible (the residual blocks as compiled units) and the any-layer mode runs.
    grids = model.grid_layers()
    assert grids["layer3"] == (4, 4) and grids["layer1.0"] == (16, 16)
    at3, python3 = model.at_layer("layer3"), python.at_layer("layer3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # first-order residual of random weights: not the point
        np.testing.assert_allclose(sv.explain(at3, cat, cat[:, ::-1]).query_map,
                                   sv.explain(python3, cat, cat[:, ::-1]).query_map, atol=1e-4)


def test_python_view_has_no_script_module_hooks_could_fail_on(resnet18, tmp_path):
    x = _batch()
    reloaded = _saved_script(resnet18, tmp_path / "r.pt", "script", x)
    view = python_view(reloaded, x)
    assert not any(isinstance(m, torch.jit.ScriptModule) for m in view.modules())
    blocks = {n for n, m in view.named_modules() if isinstance(m, CompiledBlock)}
    assert blocks == {f"layer{i}.{j}" for i in range(1, 5) for j in range(2)}  # the residual blocks only
    assert isinstance(view.conv1, nn.Conv2d) and isinstance(view.fc, nn.Linear)
    duplicate = copy.deepcopy(view)
    with torch.no_grad():
        duplicate.layer1[0].compiled.conv1.weight.fill_(1.0)  # the copy's compiled weights are its own
        assert torch.equal(view(x), reloaded(x)) and not torch.allclose(duplicate(x), reloaded(x), atol=1e-4)
    view.train()
    assert view.layer1[0].compiled.training  # train()/eval() reach the compiled blocks
    view.eval()


def test_scripted_python_chain_is_rebuilt_entirely_and_explains_identically(tmp_path):
    net = TinyEmbeddingNet(seed=2)
    path = tmp_path / "tiny.pt"
    _saved_script(net, path, "script", _batch())
    model = load(path, preprocess=TINY_PREPROCESS)
    assert not any(isinstance(m, CompiledBlock) for m in model.module.modules())
    reference = sv.SimilarityModel.wrap(TinyEmbeddingNet(seed=2), preprocess=TINY_PREPROCESS)
    photo = load_photo("coffee")
    ours, theirs = sv.explain(model, photo, photo[:, ::-1]), sv.explain(reference, photo, photo[:, ::-1])
    assert ours.score == pytest.approx(theirs.score, abs=1e-6)
    np.testing.assert_allclose(ours.query_map, theirs.query_map, atol=1e-6)


class _NormalizedTiny(TinyEmbeddingNet):
    """An embedding net whose forward L2-normalises its output, as metric-learning exports do."""

    def forward(self, x):
        return torch.nn.functional.normalize(self.head(self.flatten(self.pool(self.backbone(x)))), dim=1)


def test_torchscript_with_normalised_output_is_recognised(tmp_path):
    net = _NormalizedTiny(seed=4)
    path = tmp_path / "normalized.pt"
    reloaded = _saved_script(net, path, "script", _batch())
    model = load(path, preprocess=TINY_PREPROCESS, metric="dot")
    x = _batch()
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), reloaded(x), rtol=0, atol=1e-6)
    assert model.output_normalized and model.head_kind == "linear"
    photo = load_photo("coffee")
    exp = sv.explain(model, photo, photo[:, ::-1])
    with torch.no_grad():
        pair = reloaded(torch.cat([model.prepare(photo).tensor, model.prepare(photo[:, ::-1]).tensor]))
    assert exp.score == pytest.approx(float(pair[0] @ pair[1]), abs=1e-6)


class _Residual(nn.Module):
    """A forward that is not its children in order: the input is added back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x + self.conv(x)), 1))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_that_is_not_a_chain_is_a_clear_error(how, tmp_path):
    path = tmp_path / "residual.pt"
    _saved_script(_Residual().eval(), path, how, _batch(32))
    with pytest.raises(InputError) as info:
        load(path, preprocess={"input_size": 32, "resize_short": 32})
    message = str(info.value)
    assert "is not its children run in order" in message and "max difference" in message
    assert "torch.save(net.state_dict()" in message and "'timm:NAME'" in message


def test_wrap_accepts_a_script_module_directly():
    """SimilarityModel.wrap(scripted) goes through the script's Python view, as load(path) does
    (before, it refused it as having no Conv2d layer)."""
    from simviz_widgets.adapters import SimilarityModel
    from simviz_widgets.images import PreprocessConfig

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    scripted = torch.jit.script(net)
    model = SimilarityModel.wrap(scripted, preprocess=PreprocessConfig(input_size=(64, 64), resize_short=None))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), scripted(x), atol=1e-5)
    assert model.name == "ResNet"
    assert model.feature_layer == "layer4" and model.describe()["mode"] == "exact"


def test_a_half_precision_script_in_train_mode_is_wrapped_with_a_warning():
    """The probe followed neither the script's dtype (a float16 script was refused with a dtype
    error) nor its mode was reported (switched to eval silently)."""
    from simviz_widgets.adapters import SimilarityModel
    from simviz_widgets.images import PreprocessConfig

    torch.manual_seed(0)
    scripted = torch.jit.script(torchvision.models.resnet18(num_classes=10).half())
    scripted.train()
    with pytest.warns(UserWarning, match="train mode"):
        model = SimilarityModel.wrap(scripted, preprocess=PreprocessConfig(input_size=(64, 64), resize_short=None))
    assert model.dtype == torch.float16 and scripted.training is False
