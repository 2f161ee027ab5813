"""Counters and latency histograms, rendered in the Prometheus text exposition format."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

from testtime.types import Usage

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
Labels = tuple[tuple[str, str], ...]


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """The gateway's Prometheus metrics; gauges are read from callbacks at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._help: dict[str, str] = {}
        self._hist: dict[Labels, list[float]] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to the counter ``name`` with ``labels``."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help[name] = help_text
            self._counters[name][key] = self._counters[name].get(key, 0.0) + value

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value ``read`` returns at scrape time."""
        self._gauges[name] = (help_text, read)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count a finished request and record its latency."""
        self.inc("testtime_gateway_requests_total", "Requests by endpoint and HTTP status.",
                 endpoint=endpoint, status=str(status))
        key = (("endpoint", endpoint),)
        with self._lock:
            row = self._hist.setdefault(key, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += 1
            row[-1] += seconds

    def observe_usage(self, usage: Usage, strategy: str) -> None:
        """Count the tokens and backend calls one request caused."""
        help_text = "Tokens caused by requests, by kind."
        for kind, value in (("prompt", usage.prompt_tokens), ("cached", usage.cached_tokens),
                            ("generated", usage.generated_tokens),
                            ("verifier", usage.verifier_tokens)):
            self.inc("testtime_gateway_tokens_total", help_text, value, kind=kind)
        self.inc("testtime_gateway_backend_calls_total", "Backend calls made for requests.",
                 usage.calls + usage.verifier_calls)
        self.inc("testtime_gateway_strategy_requests_total", "Requests by strategy name.",
                 strategy=strategy.partition(":")[0])

    def render(self) -> str:
        """The exposition text."""
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines += [f"# HELP {name} {self._help[name]}", f"# TYPE {name} counter"]
                lines += [f"{name}{_fmt(k)} {v:g}" for k, v in sorted(series.items())]
            name = "testtime_gateway_request_seconds"
            lines += [f"# HELP {name} End-to-end request latency.", f"# TYPE {name} histogram"]
            for key, row in sorted(self._hist.items()):
                for bound, count in zip(BUCKETS, row, strict=False):
                    lines.append(f"{name}_bucket{_fmt((*key, ('le', f'{bound:g}')))} {count:g}")
                lines.append(f"{name}_bucket{_fmt((*key, ('le', '+Inf')))} {row[-2]:g}")
                lines.append(f"{name}_count{_fmt(key)} {row[-2]:g}")
                lines.append(f"{name}_sum{_fmt(key)} {row[-1]:.6f}")
        for name, (help_text, read) in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                      f"{name} {float(read()):g}"]
        return "\n".join(lines) + "\n"
