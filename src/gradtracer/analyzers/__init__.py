"""Import paths of the published GradTracer examples, kept working.

``from gradtracer.analyzers.embedding import EmbeddingTracker`` and
``from gradtracer.analyzers.manager import FlowManager`` re-export the current classes
(:mod:`gradtracer.embedding.tracker`, :mod:`gradtracer.flow.manager`).
"""

__all__: list[str] = []
