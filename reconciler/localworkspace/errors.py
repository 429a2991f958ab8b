"""The error answers of the local workspace, in the shape the Databricks REST API uses.

Every failure a route can produce is an `ApiError`: an HTTP status plus the JSON body
`{"error_code": ..., "message": ...}` (and optional `details`) that `databricks-sdk` parses into
its typed exceptions (`databricks/sdk/errors/parser.py`). The SDK maps the `error_code` first and
the status second (`errors/platform.py`), so both are chosen to land on the same exception class
a real workspace produces: RESOURCE_DOES_NOT_EXIST -> ResourceDoesNotExist, 409 -> ResourceConflict...
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: raised anywhere under a route handler, rendered by the server."""

    def __init__(self, status: int, error_code: str | int, message: str, *,
                 details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
                 text: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.text = text  # when set, the answer is this plain text, not the JSON error body

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error_code": self.error_code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def not_found(message: str, error_code: str = "RESOURCE_DOES_NOT_EXIST") -> ApiError:
    return ApiError(404, error_code, message)


def already_exists(message: str) -> ApiError:
    return ApiError(409, "RESOURCE_ALREADY_EXISTS", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "RESOURCE_CONFLICT", message)


def invalid(message: str) -> ApiError:
    """A value the API understood but does not accept (bad name, traffic not adding up...)."""
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def malformed(message: str) -> ApiError:
    """A body the API could not deserialise: not JSON, or a field of the wrong JSON type.

    Databricks answers these from its request parser with MALFORMED_REQUEST ("Could not parse
    request object: ..."); the SDK maps the unknown code by status to `BadRequest`.
    """
    return ApiError(400, "MALFORMED_REQUEST", message)


def permission_denied(message: str) -> ApiError:
    return ApiError(403, "PERMISSION_DENIED", message)


def invalid_request_path() -> ApiError:
    """A Workspace API path with `.` or `..` segments. Real workspaces answer 400 with the plain
    text body "Invalid request path", not JSON: `GET /api/2.0/workspace/get-status?path=/Repos/
    .../Notebooks/../common/reusable.py` got exactly that (databrickslabs/ucx#2882, whose SDK then
    failed to parse the answer)."""
    return ApiError(400, "BAD_REQUEST", "Invalid request path", text="Invalid request path")

