"""Datasets: loaders and built-in generated tasks."""

from testtime.tasks.arith import ArithTask
from testtime.tasks.base import LoadReport, Task, TaskError, make_task, tasks
from testtime.tasks.gsm8k_train import Gsm8kTrainTask
from testtime.tasks.hf import AimeTask, Gsm8kTask, Math500Task
from testtime.tasks.humaneval import HumanEvalTask
from testtime.tasks.jsonl import JsonlTask

__all__ = [
    "AimeTask", "ArithTask", "Gsm8kTask", "Gsm8kTrainTask", "HumanEvalTask", "JsonlTask",
    "LoadReport", "Math500Task", "Task", "TaskError", "make_task", "tasks",
]
