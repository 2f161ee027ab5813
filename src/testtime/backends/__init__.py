"""Backends: one file per engine behind one async protocol."""

from testtime.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    StreamingBackend,
    backends,
    make_backend,
)
from testtime.backends.embedded import EmbeddedBackend
from testtime.backends.openai import OpenAIBackend
from testtime.backends.scripted import ScriptedBackend

__all__ = [
    "Backend",
    "BackendError",
    "Capabilities",
    "EmbeddedBackend",
    "OpenAIBackend",
    "ScriptedBackend",
    "StreamingBackend",
    "backends",
    "make_backend",
]
