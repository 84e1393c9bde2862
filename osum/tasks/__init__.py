"""Task registry: tag strings, prompt pools, target rendering, hypothesis parsing, label sets."""

from osum.tasks.registry import DEFAULT_TASKS, Task, TaskRegistry, UnknownTaskError, normalize_tag_string

__all__ = ["DEFAULT_TASKS", "Task", "TaskRegistry", "UnknownTaskError", "normalize_tag_string"]
