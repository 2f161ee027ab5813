"""Datasets: loaders and built-in generated tasks."""

from testtime.tasks.arith import ArithTask
from testtime.tasks.base import LoadReport, Task, TaskError, make_task, tasks
from testtime.tasks.jsonl import JsonlTask

__all__ = ["ArithTask", "JsonlTask", "LoadReport", "Task", "TaskError", "make_task", "tasks"]
