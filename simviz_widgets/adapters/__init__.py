"""Adapters: any torch embedding model as feature map -> pooling -> head -> metric."""

from .similarity_model import METRICS, POOLINGS, ModelAdapterError, Pooling, SimilarityModel

__all__ = ["SimilarityModel", "Pooling", "ModelAdapterError", "METRICS", "POOLINGS"]
