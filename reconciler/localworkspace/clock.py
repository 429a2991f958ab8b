"""Time and identifiers for the local workspace: wall-clock milliseconds for the timestamps the
API returns, a monotonic clock for update deadlines (immune to wall-clock jumps), fresh ids."""

from __future__ import annotations

import time
import uuid

WORKSPACE_ID = "1234567890123456"  # what /.well-known/databricks-config and X-Databricks-Org-Id report
METASTORE_ID = "6c2f1b5e-0a51-4d1c-9a3e-5f6d7e8a9b0c"


def now_ms() -> int:
    """Unix time in milliseconds, the unit of every Databricks timestamp field."""
    return int(time.time() * 1000)


def monotonic() -> float:
    return time.monotonic()


def hex_id() -> str:
    """32 hex digits, the form of serving endpoint ids (the Permissions API key)."""
    return uuid.uuid4().hex


def uuid_id() -> str:
    return str(uuid.uuid4())
