"""Request bodies: reading them off the socket and parsing them, defensively.

Anything may arrive (the contract tests throw random bytes at every route), so every failure
becomes an `ApiError` in the API's shape: a body that is not a JSON object is 400
MALFORMED_REQUEST, an oversized or unreadable one is refused before it is parsed. JSON bodies
must be objects; `NaN`/`Infinity` are refused (they are not JSON and could not be echoed back).
`multipart/form-data` is accepted because `w.workspace.upload` posts `/workspace/import` that way.
"""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Protocol

from reconciler.localworkspace.errors import ApiError, malformed

MAX_BODY_BYTES = 16 * 1024 * 1024
BODYLESS_METHODS = ("GET", "HEAD", "DELETE")


class BodyError(Exception):
    """The body could not be read; the connection cannot be trusted for another request."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class Readable(Protocol):
    """What a request body is read from (the server's `rfile`)."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


def read_body(stream: Readable, headers: dict[str, str]) -> bytes:
    """The request body, by Content-Length or chunked transfer encoding."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(stream)
    raw_length = headers.get("content-length")
    if raw_length is None:
        return b""
    try:
        length = int(raw_length)
    except ValueError:
        raise BodyError(malformed(f"Invalid Content-Length header: '{raw_length}'")) from None
    if length < 0:
        raise BodyError(malformed(f"Invalid Content-Length header: '{raw_length}'"))
    if length > MAX_BODY_BYTES:
        raise BodyError(ApiError(413, "REQUEST_TOO_LARGE", f"The request body exceeds {MAX_BODY_BYTES} bytes."))
    body = stream.read(length)
    if len(body) < length:
        raise BodyError(malformed("The request body ended before Content-Length bytes were sent."))
    return body


def _read_chunked(stream: Readable) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = stream.readline(1024).strip()
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            raise BodyError(malformed("Invalid chunked transfer encoding.")) from None
        if size == 0:
            while stream.readline(1024).strip():  # trailers
                pass
            return b"".join(chunks)
        total += size
        if size < 0 or total > MAX_BODY_BYTES:
            raise BodyError(ApiError(413, "REQUEST_TOO_LARGE", f"The request body exceeds {MAX_BODY_BYTES} bytes."))
        chunks.append(stream.read(size))
        stream.readline(1024)


def parse_body(method: str, raw: bytes, content_type: str, *, for_log: bool = False) -> dict[str, Any]:
    """The JSON object (or multipart form) a request carries; {} for none. GET, HEAD and DELETE
    bodies are ignored, as the API ignores them."""
    if method in BODYLESS_METHODS or not raw.strip():
        return {}
    if content_type.lower().startswith("multipart/form-data"):
        return _parse_multipart(raw, content_type, for_log=for_log)
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise malformed(f"Could not parse request object: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(value, dict):
        raise malformed("Could not parse request object: the request body must be a JSON object.")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"'{name}' is not valid JSON")


def _parse_multipart(raw: bytes, content_type: str, *, for_log: bool) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1", "replace")
                                                  + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise malformed("Could not parse request object: invalid multipart/form-data body.")
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)  # bytes (or None) when decoded
        payload = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None or name == "content":
            form[name] = payload.decode("utf-8", "replace") if for_log else payload
        else:
            form[name] = payload.decode("utf-8", "replace")
    return form
