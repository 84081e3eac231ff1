"""Property tests of the decomposition (hypothesis; the derandomized profile of tests/conftest.py).

(a) Completeness on random small conv models x pooling x head x metric: the overall maps and the
    point-to-point matrix D sum to the model's own score. The decomposition claims exactness for
    affine heads with avg, max (argmax mask) and GeM (clamped features) pooling, so on float64
    networks only rounding may remain, measured against the metric's natural scale (1 for cosine,
    |g_X||g_Y| for dot, |g_X|^2 + |g_Y|^2 for Euclidean) as ``completeness_error`` is.
(b) Point maps at random pixels are finite and bilinear in D: at a cell centre the map is that
    cell's row of D, between two centres the linear interpolation, and summed over every cell
    centre it is the other image's overall map.
(c) ``swapped()`` transposes D (and explaining the pair the other way round gives the same D^T).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import simviz_widgets as sv
from simviz_widgets.images import PreprocessConfig
from simviz_widgets.models import GeM

POOLINGS = ("avg", "max", "gem")
HEADS = ("identity", "linear", "linear_bias", "batchnorm", "linear_batchnorm")
METRICS = ("cosine", "dot", "euclidean")
#: keep every image's own size (fully convolutional nets): non-square grids, unequal pairs
FREE_SIZE = PreprocessConfig(input_size=None, resize_short=None, interpolation="bilinear",
                             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
SIDES = (16, 20, 24, 32)  # two stride-2 convs: grids of 4, 5, 6, 8 cells


class _RandomNet(nn.Module):
    """conv-ReLU x2 (stride 2), a global pooling, flatten, and a head; float64, seeded weights."""

    def __init__(self, pooling: str, head: str, *, hidden: int, channels: int, dim: int, seed: int,
                 gem_p: float = 3.0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, hidden, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, channels, 3, stride=2, padding=1), nn.ReLU())
        self.pool = {"avg": lambda: nn.AdaptiveAvgPool2d(1), "max": lambda: nn.AdaptiveMaxPool2d(1),
                     "gem": lambda: GeM(p=gem_p)}[pooling]()
        self.flatten = nn.Flatten()
        self.head = {
            "identity": lambda: nn.Identity(),
            "linear": lambda: nn.Linear(channels, dim, bias=False),
            "linear_bias": lambda: nn.Linear(channels, dim),
            "batchnorm": lambda: nn.BatchNorm1d(channels),
            "linear_batchnorm": lambda: nn.Sequential(nn.Linear(channels, dim), nn.BatchNorm1d(dim)),
        }[head]()
        with torch.no_grad():
            for name, p in self.named_parameters():
                if not name.startswith("pool"):
                    # Positive-leaning conv biases keep some ReLUs alive in most draws.
                    scale, shift = (0.6, 0.0) if p.ndim > 1 else (0.2, 0.05)
                    p.copy_(torch.randn(p.shape, generator=gen) * scale + shift)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                    m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        self.double().eval()

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.body(x))))


def _image(seed: int, rows: int, cols: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    blocks = np.kron(g.random((rows // 4, cols // 4, 3)), np.ones((4, 4, 1)))
    return blocks * 0.7 + g.random((rows, cols, 3)) * 0.3


def _natural(metric: str, gq: torch.Tensor, gr: torch.Tensor) -> float:
    return {"cosine": 1.0, "dot": float(gq.norm() * gr.norm()),
            "euclidean": float(gq @ gq + gr @ gr)}[metric]


def _explain(model, q, r):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a draw may zero an embedding (dead ReLUs): a warning, score 0
        return sv.explain(model, q, r)


models = st.fixed_dictionaries({
    "pooling": st.sampled_from(POOLINGS),
    "head": st.sampled_from(HEADS),
    "metric": st.sampled_from(METRICS),
    "hidden": st.integers(2, 6),
    "channels": st.integers(1, 8),
    "dim": st.integers(1, 6),
    "seed": st.integers(0, 2**31 - 1),
    "gem_p": st.floats(1.0, 5.0),
})
sizes = st.tuples(st.sampled_from(SIDES), st.sampled_from(SIDES))


def _wrap(spec: dict) -> tuple[nn.Module, sv.SimilarityModel]:
    spec = dict(spec)
    metric = spec.pop("metric")
    net = _RandomNet(spec.pop("pooling"), spec.pop("head"), **spec)
    return net, sv.SimilarityModel.wrap(net, metric=metric, preprocess=FREE_SIZE)


# ------------------------------------------------------------------------------------------
# (a) completeness


@settings(max_examples=60)
@given(spec=models, size_q=sizes, size_r=sizes, image_seed=st.integers(0, 2**16))
def test_decomposition_is_complete_on_random_models(spec, size_q, size_r, image_seed):
    net, model = _wrap(spec)
    q, r = _image(image_seed, *size_q), _image(image_seed + 1, *size_r)
    exp = _explain(model, q, r)
    # The score is the module's own similarity, computed here independently of the adapter.
    with torch.no_grad():
        gq = net(model.prepare(q).tensor.double())[0]
        gr = net(model.prepare(r).tensor.double())[0]
    expected = float(model.score_embeddings(gq[None], gr[None])[0])
    natural = max(_natural(spec["metric"], gq, gr), 1e-12)
    assert abs(exp.score - expected) <= 1e-9 * natural
    # What the decomposition claims: exact for these heads and poolings, up to float64 rounding.
    assert exp.completeness_error <= 1e-9
    D = exp.point_to_point.matrix()
    assert D.shape == (exp.query_map.size, exp.reference_map.size)
    assert abs(float(D.sum()) - exp.score) <= 1e-9 * natural
    # The overall maps are D's row / column sums, handed out as float32.
    for m in (exp.query_map, exp.reference_map):
        total = float(m.astype(np.float64).sum())
        assert abs(total - exp.score) <= 1e-9 * natural + 1e-6 * float(np.abs(m).astype(np.float64).sum())
    np.testing.assert_allclose(exp.query_map.ravel(), D.sum(1), rtol=1e-5, atol=1e-7 * natural)
    np.testing.assert_allclose(exp.reference_map.ravel(), D.sum(0), rtol=1e-5, atol=1e-7 * natural)


# ------------------------------------------------------------------------------------------
# (b) point maps


@pytest.fixture(scope="module")
def explained():
    """A few explained pairs of different grids and metrics, reused by the point-map properties."""
    out = []
    for k, (metric, size_q, size_r) in enumerate([("cosine", (16, 24), (32, 20)), ("dot", (20, 20), (16, 32)),
                                                  ("euclidean", (24, 16), (24, 16))]):
        spec = {"pooling": ("avg", "max", "gem")[k], "head": "linear_bias", "metric": metric, "hidden": 4,
                "channels": 6, "dim": 5, "seed": 11 + k, "gem_p": 3.0}
        _, model = _wrap(spec)
        out.append(_explain(model, _image(k, *size_q), _image(k + 7, *size_r)))
    return out


def _centre(cell: float, pixels: int, cells: int) -> float:
    """Display pixel of fractional cell position ``cell`` (half-pixel centres)."""
    return (cell + 0.5) * pixels / cells - 0.5


def _bilinear_row(D: np.ndarray, grid: tuple[int, int], u: float, v: float) -> np.ndarray:
    """Independent oracle: the bilinear combination of D's rows at cell position (u, v)."""
    h, w = grid
    u, v = min(max(u, 0.0), h - 1.0), min(max(v, 0.0), w - 1.0)
    r0, c0 = int(np.floor(u)), int(np.floor(v))
    r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
    fu, fv = u - r0, v - c0
    return ((1 - fu) * (1 - fv) * D[r0 * w + c0] + (1 - fu) * fv * D[r0 * w + c1]
            + fu * (1 - fv) * D[r1 * w + c0] + fu * fv * D[r1 * w + c1])


def _side(exp, side):
    D = exp.point_to_point.matrix()
    if side == "query":
        return D, exp.query_map.shape, exp.query_size, exp.reference_map.shape, exp.from_query
    return D.T, exp.reference_map.shape, exp.reference_size, exp.query_map.shape, exp.from_reference


@settings(max_examples=60)
@given(which=st.integers(0, 2), side=st.sampled_from(["query", "reference"]),
       fr=st.floats(-0.5, 1.0), fc=st.floats(-0.5, 1.0), reading=st.sampled_from(["contribution", "correspondence"]))
def test_point_maps_at_random_pixels_are_finite_and_bilinear(explained, which, side, fr, fc, reading):
    exp = explained[which]
    D, grid, size, other_grid, point = _side(exp, side)
    # fr, fc in [-0.5, 1] scale to the whole image with its half-pixel margin.
    row = min(max(fr * size[0], -0.5), size[0] - 0.5)
    col = min(max(fc * size[1], -0.5), size[1] - 0.5)
    values = point(row, col, reading=reading)
    assert values.shape == other_grid and values.dtype == np.float32
    assert np.isfinite(values).all()
    if reading == "contribution":
        u = (row + 0.5) * grid[0] / size[0] - 0.5
        v = (col + 0.5) * grid[1] / size[1] - 0.5
        expect = _bilinear_row(D, grid, u, v)
        np.testing.assert_allclose(values.ravel(), expect, rtol=1e-5, atol=1e-6 * np.abs(D).max())
    else:
        assert np.abs(values).max() <= 1 + 1e-5  # a cosine


@settings(max_examples=40)
@given(which=st.integers(0, 2), side=st.sampled_from(["query", "reference"]), data=st.data())
def test_point_map_at_a_cell_centre_is_the_row_of_D(explained, which, side, data):
    exp = explained[which]
    D, grid, size, other_grid, point = _side(exp, side)
    i = data.draw(st.integers(0, grid[0] - 1), label="cell row")
    j = data.draw(st.integers(0, grid[1] - 1), label="cell col")
    values = point(_centre(i, size[0], grid[0]), _centre(j, size[1], grid[1]))
    np.testing.assert_allclose(values.ravel(), D[i * grid[1] + j], rtol=1e-5, atol=1e-6 * np.abs(D).max())


@settings(max_examples=40)
@given(which=st.integers(0, 2), side=st.sampled_from(["query", "reference"]), t=st.floats(0.0, 1.0),
       along_rows=st.booleans(), data=st.data())
def test_point_map_between_two_centres_is_linear(explained, which, side, t, along_rows, data):
    exp = explained[which]
    D, grid, size, other_grid, point = _side(exp, side)
    i = data.draw(st.integers(0, grid[0] - 1 - along_rows), label="cell row")
    j = data.draw(st.integers(0, grid[1] - 1 - (not along_rows)), label="cell col")
    a = D[i * grid[1] + j]
    if along_rows:
        b = D[(i + 1) * grid[1] + j]
        values = point(_centre(i + t, size[0], grid[0]), _centre(j, size[1], grid[1]))
    else:
        b = D[i * grid[1] + j + 1]
        values = point(_centre(i, size[0], grid[0]), _centre(j + t, size[1], grid[1]))
    np.testing.assert_allclose(values.ravel(), (1 - t) * a + t * b, rtol=1e-5, atol=1e-6 * np.abs(D).max())


@pytest.mark.parametrize("side", ["query", "reference"])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_point_maps_over_every_cell_centre_sum_to_the_other_map(explained, which, side):
    exp = explained[which]
    _, grid, size, other_grid, point = _side(exp, side)
    total = sum(point(_centre(i, size[0], grid[0]), _centre(j, size[1], grid[1])).astype(np.float64)
                for i in range(grid[0]) for j in range(grid[1]))
    other = exp.reference_map if side == "query" else exp.query_map
    np.testing.assert_allclose(total, other, rtol=1e-5, atol=1e-6 * np.abs(other).max())


# ------------------------------------------------------------------------------------------
# (c) swapping


@settings(max_examples=25)
@given(spec=models, size_q=sizes, size_r=sizes, image_seed=st.integers(0, 2**16))
def test_swapped_transposes_D(spec, size_q, size_r, image_seed):
    _, model = _wrap(spec)
    q, r = _image(image_seed, *size_q), _image(image_seed + 1, *size_r)
    exp = _explain(model, q, r)
    s = exp.swapped()
    D = exp.point_to_point.matrix()
    np.testing.assert_array_equal(s.point_to_point.matrix(), D.T)
    np.testing.assert_array_equal(s.query_map, exp.reference_map)
    np.testing.assert_array_equal(s.reference_map, exp.query_map)
    assert s.score == exp.score and s.query_size == exp.reference_size
    np.testing.assert_array_equal(s.swapped().point_to_point.matrix(), D)
    # A hover on the swapped explanation's query is a hover on the original's reference.
    row, col = (exp.reference_size[0] - 1) / 3, (exp.reference_size[1] - 1) / 2
    np.testing.assert_array_equal(s.from_query(row, col), exp.from_reference(row, col))
    # Explaining the pair the other way round gives the same matrix, transposed.
    back = _explain(model, r, q)
    scale = max(float(np.abs(D).max()), 1e-300)
    np.testing.assert_allclose(back.point_to_point.matrix(), D.T, rtol=1e-9, atol=1e-12 * scale)
