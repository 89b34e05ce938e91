"""The built-in tasks; importing the package registers them all."""
from tasks import ner, sentiment, summarization, translation  # noqa: F401  (register the tasks)
from tasks.base import TASKS, get_task

__all__ = ["TASKS", "get_task"]
