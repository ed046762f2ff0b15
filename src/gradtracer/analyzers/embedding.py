"""Compatibility path: ``from gradtracer.analyzers.embedding import EmbeddingTracker``."""

from gradtracer.embedding.tracker import EmbeddingTracker

__all__ = ["EmbeddingTracker"]
