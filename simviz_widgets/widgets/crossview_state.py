"""What the cross-view explorer shows, without any widget: matches, the fitted geometry, the
alignment check and the hovered point's best match, as a plain class (docs/crossview.md).

:class:`CrossViewState` holds the explanation on show and, computed once per explanation, its
matches (:func:`~simviz_widgets.geometry.correspondences`), a fit per geometry kind and its warp of
the query onto the reference. It answers what a view draws: the match lines (coloured by strength,
inliers solid, outliers dashed grey), the hovered point's line to its best match, the pins' lines,
the alignment image for a blend, the readout, and the shared-content maps once a job brings them.
All positions are display pixels (row, col) of the explanation's images; a view maps them to its
canvases. :func:`compute_geometry` is the part a background job runs (pure numpy / scikit-image).

>>> import numpy as np
>>> from simviz_widgets.explain.base import PairExplanation, PointToPoint
>>> g = np.eye(4, dtype=np.float32)
>>> photo = np.zeros((20, 20, 3), np.uint8)
>>> exp = PairExplanation("decomposition", 4.0, photo, photo, np.ones((2, 2)), np.ones((2, 2)), True,
...                       point_to_point=PointToPoint(g, g, 1.0, (2, 2), (2, 2)))
>>> state = CrossViewState(exp, kind="affine")
>>> len(state.matches), [line.style for line in state.lines()]
(4, ['inlier', 'inlier', 'inlier', 'inlier'])
>>> [round(v, 3) for v in state.hover("query", 4.5, 14.5).reference]
[4.5, 14.5]
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..checks import InputError, check_choice, check_float, check_instance, check_int
from ..explain.base import READINGS, SIDES, PairExplanation, other_side
from ..geometry import GEOMETRY_KINDS, GeometryFit, Matches, correspondences, fit_geometry
from ..geometry.matches import best_match
from ..render import colormap_lut
from .jobs import explain_in_job
from .session import _as_similarity_model
from .state import HoverState

__all__ = ["CrossViewState", "CrossGeometry", "Line", "compute_geometry", "pair_job", "shared_job",
           "model_at_resolution", "line_colour", "LINE_CMAP", "INLIER", "OUTLIER", "PLAIN", "HOVER", "PIN"]

#: Match lines are coloured by strength with this sequential colormap, over LINE_RANGE of it (its
#: darkest end would vanish into a photo's shadows).
LINE_CMAP = "plasma"
LINE_RANGE = (0.22, 1.0)
OUTLIER_COLOUR = "#d9d9d9"
HOVER_COLOUR = "#ffffff"
#: Line styles: what a view draws for each.
INLIER, OUTLIER, PLAIN, HOVER, PIN = "inlier", "outlier", "plain", "hover", "pin"


def line_colour(t: float) -> str:
    """CSS colour of strength ``t`` in [0, 1] (0 = weakest shown, 1 = strongest) on the line scale."""
    lo, hi = LINE_RANGE
    index = int(round((lo + (hi - lo) * min(max(t, 0.0), 1.0)) * 255))
    r, g, b = (int(v) for v in colormap_lut(LINE_CMAP)[index, :3])
    return f"rgb({r},{g},{b})"


class Line(NamedTuple):
    """A line between a query pixel and a reference pixel (display (row, col) of each), how strong
    the match is, its colour, and its style: INLIER (agrees with the fit: solid, coloured), OUTLIER
    (disagrees: dashed grey), PLAIN (no fit to agree with: solid, coloured), HOVER or PIN."""

    query: tuple[float, float]
    reference: tuple[float, float]
    strength: float
    colour: str
    style: str


@dataclass
class CrossGeometry:
    """What one explanation implies: its matches (None without a point-to-point part, ``note``
    saying why), and per geometry kind the fit and the warp of the query onto the reference
    (None where the fit has no transform)."""

    explanation: PairExplanation
    matches: Matches | None
    reading: str
    fits: dict[str, GeometryFit] = field(default_factory=dict)
    warps: dict[str, tuple[np.ndarray, np.ndarray] | None] = field(default_factory=dict)
    note: str | None = None

    def fit(self, kind: str) -> GeometryFit | None:
        """The ``kind`` fit, computed on first use (None without matches)."""
        if self.matches is None:
            return None
        if kind not in self.fits:
            self.fits[kind] = fit_geometry(self.matches, kind=kind)
        return self.fits[kind]

    def warp(self, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(query warped into the reference frame, valid mask) under the ``kind`` fit, or None."""
        if kind not in self.warps:
            fit = self.fit(kind)
            self.warps[kind] = None if fit is None or fit.transform is None else fit.warp(self.explanation.query)
        return self.warps[kind]


def compute_geometry(explanation: PairExplanation, kind: str, *, reading: str = "correspondence") -> CrossGeometry:
    """Matches, the ``kind`` fit and its warp for ``explanation`` (what a background job runs)."""
    check_instance(explanation, "explanation", PairExplanation)
    kind = check_choice(kind, "kind", GEOMETRY_KINDS)
    if explanation.point_to_point is None:
        note = (f"method {explanation.method!r} gives overall maps only: no point-to-point part, so no "
                "matches (choose 'decomposition' in the method menu)")
        return CrossGeometry(explanation, None, reading, note=note)
    geometry = CrossGeometry(explanation, correspondences(explanation, reading=reading), reading)
    geometry.warp(kind)
    return geometry


def pair_job(method_cls, query, reference, job, *, kind: str, reading: str):
    """A background job's work for a new pair: the explanation (prepared images, the job's model
    copy) and its geometry, returned together so that they land together."""
    explanation = explain_in_job(job, method_cls, {}, query, reference, label=method_cls.__name__)
    job.check()
    return explanation, compute_geometry(explanation, kind, reading=reading)


def shared_job(method_cls, query, reference, job):
    """A background job's work for the shared-content map: ``method_cls`` on the job's model copy."""
    q, r = job.model.prepare(query, name="query"), job.model.prepare(reference, name="reference")
    return explain_in_job(job, method_cls, {}, q, r, label="shared content")


def model_at_resolution(model, resolution):
    """``model`` on a ``resolution`` x ``resolution`` feature grid (``SimilarityModel.at_resolution``),
    or as given for ``resolution=None``; a clear error where the model cannot."""
    if resolution is None:
        return model
    resolution = check_int(resolution, "resolution", minimum=1)
    if model is None:
        raise InputError(f"resolution={resolution} needs a model to recompute at that grid; give model= "
                         "or leave resolution=None")
    model = _as_similarity_model(model)
    at_resolution = getattr(model, "at_resolution", None)
    if not callable(at_resolution):
        raise InputError(f"resolution={resolution} needs SimilarityModel.at_resolution(n), which model "
                         f"{getattr(model, 'name', type(model).__name__)!r} does not have in this version; "
                         "leave resolution=None to use the model's own grid")
    return at_resolution(resolution)


class CrossViewState:
    """Matches, geometry, alignment and hover of a cross-view explorer (see the module docstring).

    ``kind``: the geometry fitted (:data:`~simviz_widgets.geometry.GEOMETRY_KINDS`); ``n_lines``:
    how many of the strongest matches are drawn; ``blend``: the alignment check's mix (0 = the
    reference, 1 = the warped query); ``hover_state``: the HoverState shared with the pair viewer
    (its pins get lines to their best matches); ``reading``: how matches are made ("correspondence").
    """

    def __init__(self, explanation: PairExplanation, *, kind: str = "similarity", n_lines: int = 30,
                 blend: float = 0.5, hover_state: HoverState | None = None, reading: str = "correspondence",
                 geometry: CrossGeometry | None = None):
        self.kind = kind
        self.n_lines = n_lines
        self.blend = blend
        self.hover_state = HoverState() if hover_state is None else check_instance(
            hover_state, "hover_state", HoverState)
        self.reading = check_choice(reading, "reading", READINGS)
        self.explanation: PairExplanation | None = None
        self.set_explanation(explanation, geometry=geometry)

    # -- options -------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self._kind

    @kind.setter
    def kind(self, value) -> None:
        self._kind = check_choice(value, "kind", GEOMETRY_KINDS)
        if getattr(self, "hovered", None) is not None:
            self._predicted = self._predict()  # under the new fit

    @property
    def n_lines(self) -> int:
        return self._n_lines

    @n_lines.setter
    def n_lines(self, value) -> None:
        self._n_lines = check_int(value, "n_lines", minimum=0)

    @property
    def blend(self) -> float:
        return self._blend

    @blend.setter
    def blend(self, value) -> None:
        self._blend = check_float(value, "blend", minimum=0.0, maximum=1.0)

    # -- explanation -----------------------------------------------------------------------------------
    def set_explanation(self, explanation: PairExplanation, *, geometry: CrossGeometry | None = None) -> None:
        """Show ``explanation``: its matches and fits (``geometry``, when a job computed them for this
        very explanation; computed here otherwise). The hovered point and the shared maps go."""
        check_instance(explanation, "explanation", PairExplanation)
        if geometry is None or geometry.explanation is not explanation or geometry.reading != self.reading:
            geometry = compute_geometry(explanation, self.kind, reading=self.reading)
        self.explanation, self.geometry = explanation, geometry
        self.hovered: tuple[str, float, float] | None = None
        self.hover_line: Line | None = None
        self._predicted: tuple[float, float] | None = None
        self.shared: dict[str, np.ndarray] | None = None
        self._pin_matches: dict = {}
        if geometry.matches is not None and len(geometry.matches):
            self._strength_range = (float(geometry.matches.strength.min()), float(geometry.matches.strength.max()))
        else:
            self._strength_range = (0.0, 1.0)

    @property
    def matches(self) -> Matches | None:
        return self.geometry.matches

    @property
    def fit(self) -> GeometryFit | None:
        """The fit of the current kind (None without matches)."""
        return self.geometry.fit(self.kind)

    @property
    def n_shown(self) -> int:
        """How many match lines are drawn: ``n_lines``, at most the number of matches."""
        return 0 if self.matches is None else min(self.n_lines, len(self.matches))

    @property
    def strength_range(self) -> tuple[float, float]:
        """(weakest, strongest) match strength: the ends of the line colour scale."""
        return self._strength_range

    def colour_of(self, strength: float) -> str:
        lo, hi = self._strength_range
        return line_colour(0.5 if hi - lo < 1e-12 else (strength - lo) / (hi - lo))

    # -- lines -----------------------------------------------------------------------------------------
    def lines(self) -> list[Line]:
        """The ``n_lines`` strongest matches, in drawing order: outliers first, then the rest, weakest
        first within each (the strongest inliers end up on top)."""
        if not self.n_shown:
            return []
        matches, fit = self.matches, self.fit
        has_fit = fit is not None and fit.transform is not None
        out = []
        for k in range(self.n_shown):  # matches are strongest first
            strength = float(matches.strength[k])
            style = (INLIER if fit.inliers[k] else OUTLIER) if has_fit else PLAIN
            colour = OUTLIER_COLOUR if style == OUTLIER else self.colour_of(strength)
            ends = tuple(matches.query_points[k]), tuple(matches.reference_points[k])
            out.append(Line(*ends, strength, colour, style))
        return sorted(out, key=lambda line: (line.style != OUTLIER, line.strength))

    def _line(self, side: str, row: float, col: float, colour: str, style: str) -> Line:
        match_row, match_col, strength = best_match(self.explanation, side, row, col, reading=self.reading)
        here, there = (row, col), (match_row, match_col)
        return Line(*((here, there) if side == "query" else (there, here)), strength, colour, style)

    def hover(self, side: str, row: float, col: float) -> Line | None:
        """The hovered display pixel (row, col) of ``side``: its line to its best match in the other
        image (None for a method without a point-to-point part)."""
        side = check_choice(side, "side", SIDES)
        self.hovered = (side, *self.explanation.check_point(side, row, col)[1:])
        self.hover_line = (None if self.explanation.point_to_point is None
                           else self._line(*self.hovered, HOVER_COLOUR, HOVER))
        self._predicted = self._predict()
        return self.hover_line

    def leave(self) -> None:
        self.hovered, self.hover_line, self._predicted = None, None, None

    def pin_lines(self) -> list[Line]:
        """A line from each pin (of this pair's images) to its best match, in the pin's colour."""
        if self.explanation.point_to_point is None:
            return []
        lines = []
        for pin in self.hover_state.pins:
            rows, cols = self.explanation.size(pin.source)
            if not (-0.5 <= pin.row <= rows - 0.5 and -0.5 <= pin.col <= cols - 0.5):
                continue  # a pin of another pair (the state is shared)
            if pin not in self._pin_matches:
                self._pin_matches[pin] = self._line(pin.source, pin.row, pin.col, pin.colour, PIN)
            lines.append(self._pin_matches[pin])
        return lines

    def predicted(self) -> tuple[float, float] | None:
        """Where the fit sends the hovered query point (reference display pixel), or None."""
        return self._predicted

    def _predict(self) -> tuple[float, float] | None:
        fit = self.fit
        if self.hovered is None or self.hovered[0] != "query" or fit is None or fit.transform is None:
            return None
        rows, cols = fit.map_points(np.array([self.hovered[1]]), np.array([self.hovered[2]]))
        return float(rows[0]), float(cols[0])

    # -- alignment -------------------------------------------------------------------------------------
    def alignment_image(self, blend: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The alignment check at ``blend`` (default: the state's): (uint8 image in the reference
        frame, valid mask or None). Where the warp is valid: (1 - blend) * reference + blend * warped
        query, rounded; elsewhere (and without a transform) the reference itself, so 0 shows the
        reference exactly and 1 the warped query wherever it lands."""
        blend = self.blend if blend is None else check_float(blend, "blend", minimum=0.0, maximum=1.0)
        reference = self.explanation.reference
        warp = self.geometry.warp(self.kind) if self.matches is not None else None
        if warp is None:
            return reference.copy(), None
        warped, valid = warp
        out = reference.copy()
        if blend > 0.0:
            mixed = (1.0 - blend) * reference[valid].astype(np.float64) + blend * warped[valid]
            out[valid] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return out, valid

    def alignment_note(self) -> str | None:
        """What the alignment check cannot show, or None when the fit is fine."""
        fit = self.fit
        if fit is None:
            return "no alignment: " + (self.geometry.note or "no matches")
        if fit.transform is None:
            return f"no {fit.kind} transform: {fit.warning}"
        return None if fit.reliable else f"unreliable {fit.kind} fit: see the readout"

    def warped_frame(self) -> np.ndarray | None:
        """(4, 2) reference display pixels (row, col) where the query image's corners land, or None."""
        fit = self.fit
        if fit is None or fit.transform is None:
            return None
        rows, cols = self.explanation.query_size
        r = np.array([-0.5, -0.5, rows - 0.5, rows - 0.5])
        c = np.array([-0.5, cols - 0.5, cols - 0.5, -0.5])
        mapped = np.stack(fit.map_points(r, c), axis=1)
        return mapped if np.isfinite(mapped).all() else None

    # -- shared content --------------------------------------------------------------------------------
    def set_shared(self, explanation: PairExplanation, shared: PairExplanation) -> bool:
        """Keep the shared-content maps ``shared`` computed for ``explanation``'s pair; refused (False)
        if another explanation is on show by now (a stale job's result is never kept)."""
        if explanation is not self.explanation:
            return False
        self.shared = {side: np.asarray(shared.map(side), dtype=np.float64)
                       for side in SIDES if shared.has_map(side)}
        return True

    # -- text ------------------------------------------------------------------------------------------
    def readout_html(self) -> str:
        """The fitted transform, the inlier ratio and, when the fit is unreliable, why."""
        if self.matches is None:
            return f"<span style='color:#555'>{html.escape(self.geometry.note or '')}</span>"
        fit, n = self.fit, len(self.matches)
        head = (f"<b>{n}</b> mutual matches of {self.matches.info.get('candidates', n)} query cells "
                f"(showing the {self.n_shown} strongest)")
        if fit.transform is None:
            body = ""
        elif fit.kind == "disparity":
            disparity = float(np.median(fit.disparity[fit.inliers])) if fit.n_inliers else float("nan")
            body = (f"<b>disparity</b> fit: median disparity <b>{disparity:+.1f} px</b> · vertical offset "
                    f"<b>{fit.translation[0]:+.1f} px</b>")
        else:
            dr, dc = fit.translation
            body = (f"<b>{fit.kind}</b> fit: rotation <b>{fit.rotation_deg:+.1f}°</b> · scale "
                    f"<b>{fit.scale:.3f}</b> · translation <b>{dr:+.1f}, {dc:+.1f} px</b> (row, col)")
        ratio = (f"inliers <b>{fit.n_inliers}/{len(fit.inliers)}</b> ({100 * fit.inlier_ratio:.0f} %): matches "
                 f"within {fit.residual_threshold:.0f} px of where the fit sends them")
        lines = [part for part in (head, body, ratio) if part]
        if fit.warning:
            lines.append(f"<span style='color:#b00000'>⚠ unreliable: {html.escape(fit.warning)}</span>")
        return "<div style='font-size:13px;line-height:1.5'>" + "<br>".join(lines) + "</div>"

    def hover_text(self) -> str:
        """The hovered point, its best match, and how far the fit's prediction is from it."""
        if self.hovered is None or self.hover_line is None:
            return ""
        side, row, col = self.hovered
        line = self.hover_line
        there = line.reference if side == "query" else line.query
        text = (f"{side} ({row:.0f}, {col:.0f}) → best match in the {other_side(side)} at "
                f"({there[0]:.0f}, {there[1]:.0f}) (◯, refined below one cell), {self.reading} {line.strength:.3f}")
        predicted = self.predicted()
        if predicted is not None:
            off = math.hypot(predicted[0] - there[0], predicted[1] - there[1])
            agree = "agrees with" if off <= self.fit.residual_threshold else "disagrees with"
            text += (f" · the {self.kind} fit puts it at ({predicted[0]:.0f}, {predicted[1]:.0f}) (×), {off:.0f} px "
                     f"away: it {agree} the fit")
        return text
