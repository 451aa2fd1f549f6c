"""OpenAI-style errors: every refusal is a status and ``{"error": {message, type, param, code}}``."""
from __future__ import annotations

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
         429: "rate_limit_error", 499: "invalid_request_error", 500: "server_error", 503: "server_error",
         504: "timeout_error"}


class ApiError(Exception):
    """A request the server refuses or could not answer; headers: e.g. Retry-After for 429."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}
