"""Every explanation method on one pair, side by side: :class:`ComparisonSession` (the state and
the background work, no widgets: usable from a script) and :class:`MethodComparisonPanel` (its
view: thumbnails, scores, progress and bar charts)."""

from .panel import MethodComparisonPanel
from .results import DEFAULT_METRICS, RUNTIME, MethodResult, ResultCache, SessionEvent, SessionStatus
from .session import ComparisonSession

__all__ = ["MethodComparisonPanel", "ComparisonSession", "MethodResult", "ResultCache", "DEFAULT_METRICS",
           "RUNTIME", "SessionEvent", "SessionStatus"]
