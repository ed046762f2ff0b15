"""Import paths of the published GradTracer examples, kept working.

``from gradtracer.analyzers.embedding import EmbeddingTracker`` re-exports the current
class (:mod:`gradtracer.embedding.tracker`); ``from gradtracer.analyzers.manager import
FlowManager`` gives :class:`gradtracer.manager.FlowManager` with the published
``report()`` that also prints.
"""

__all__: list[str] = []
