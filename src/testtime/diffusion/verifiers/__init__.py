"""Image verifiers backed by real models (the digits classifiers live in builtin.py)."""
