"""The run: index the sources, generate, judge, resume; `run()` is the one way to run."""

from visinstruct.core.pipeline.runner import RunSummary, ensure_indexed, run

__all__ = ["run", "RunSummary", "ensure_indexed"]
