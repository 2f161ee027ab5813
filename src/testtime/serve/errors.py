"""OpenAI-format errors and the handlers that turn every failure into one."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("testtime.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
          502: "upstream_error", 503: "server_error", 504: "timeout_error"}


class ApiError(Exception):
    """A failure to report to the client as ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The OpenAI error object."""
        return error_body(self.status, self.message, self.code, self.param)


def error_body(status: int, message: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI returns it.

    Every error has a ``code``: the given one, else the usual one for its status.
    """
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code or _CODES.get(status, "error")}}


def error_response(status: int, message: str, code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    """A JSONResponse carrying an OpenAI error."""
    return JSONResponse(error_body(status, message, code, param), status_code=status,
                        headers=headers)


_CODES = {400: "invalid_request", 401: "invalid_api_key", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type",
          422: "invalid_request", 429: "rate_limit_exceeded", 500: "internal_error",
          502: "upstream_error", 503: "unavailable", 504: "timeout"}


_UNION_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*|dict\[.*|[A-Za-z_-]+\[.*\])$")


def _nonfinite(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    """The message, ``param`` and ``code`` for the first problem of a request body."""
    errors = exc.errors()
    if not errors:
        return "invalid request body", None, "invalid_request"
    first = errors[0]
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return f"request body is not valid JSON: {first.get('msg', '')}", None, "invalid_json"
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_TAG.match(str(p))]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    code = "invalid_request"
    if kind == "missing":
        code = "missing_required_parameter"
    elif kind.endswith("_type") or kind in ("literal_error", "model_attributes_type"):
        code = "invalid_type"
    elif kind == "extra_forbidden":
        code = "unknown_parameter"
    bad = _nonfinite(first.get("input"))
    if bad is not None:
        msg, code = f"{bad} is not a valid number; send a finite number", "invalid_value"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param, code


def install_handlers(app: FastAPI) -> None:
    """Register handlers so validation, HTTP and unexpected errors all answer in OpenAI form."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _validation_message(exc)
        return error_response(400, message, code, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        return error_response(status, str(exc.detail), _CODES.get(status, "error"),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = _rid(request)
        log.exception("unexpected error", extra={"request_id": rid})
        return error_response(500, f"internal error (request {rid}; the server log has the "
                              "details)", "internal_error")


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))
