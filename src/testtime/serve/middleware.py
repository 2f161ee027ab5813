"""ASGI middleware: request ids, the request size limit, text that is not Unicode, access logs
and request metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from testtime.serve.errors import error_body
from testtime.serve.metrics import Metrics

log = logging.getLogger("testtime.serve")
ENDPOINTS = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models", "/health",
             "/metrics"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def lone_surrogate(body: bytes) -> str | None:
    """Where a JSON body holds a lone UTF-16 surrogate (``"\\ud800"``), as a dotted path.

    Such a string is valid JSON but not Unicode text: it cannot be encoded to UTF-8, so no
    tokenizer, engine or log line can take it. Returns None for anything else (including a
    body that is not JSON, which the endpoint refuses itself).
    """
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[object, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return ".".join(path) or "body"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not _encodes(key):
                    return ".".join(path) or "body"
                stack.append((inner, (*path, key)))
        elif isinstance(item, list):
            stack.extend((inner, (*path, str(i))) for i, inner in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class GatewayMiddleware:
    """Buffers the body up to ``max_body`` bytes (413 beyond), tags and logs every request."""

    def __init__(self, app: ASGIApp, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _SAFE_ID.match(given) else "req-" + uuid.uuid4().hex[:16]
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        state["log"] = {}
        status = {"code": 500}
        path = str(scope.get("path", ""))

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            body = await self._read_body(headers, receive)
            if body is None:
                await self._reject(send_tagged, 413, f"request body exceeds {self.max_body} "
                                   "bytes", "request_too_large")
                return
            where = lone_surrogate(body)
            if where is not None:
                await self._reject(send_tagged, 400, f"{where}: text holds a lone UTF-16 "
                                   "surrogate (such as \\ud800), which is not Unicode; send "
                                   "UTF-8 text", "invalid_encoding", where)
                return
            await self.app(scope, _replay(body, receive), send_tagged)
        finally:
            seconds = time.monotonic() - started
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.observe_request(endpoint, status["code"], seconds)
            log.info("request", extra={"request_id": rid, "method": scope.get("method"),
                                       "path": path, "status": status["code"],
                                       "seconds": round(seconds, 4), **state["log"]})

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            piece = message.get("body", b"")
            size += len(piece)
            if size > self.max_body:
                return None
            chunks.append(piece)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _reject(send: Send, status: int, message: str, code: str,
                      param: str | None = None) -> None:
        payload = json.dumps(error_body(status, message, code, param)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
