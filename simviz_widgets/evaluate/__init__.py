"""Metrics on explanations. Each result declares whether higher is better."""

from .correspondence import CorrespondenceResult, correspondence_rate, display_mapping

__all__ = ["CorrespondenceResult", "correspondence_rate", "display_mapping"]
