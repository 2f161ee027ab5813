"""Evaluation: running strategies over tasks, metrics, summaries."""
