"""Fixtures shared by the integration tests that need a misbehaving server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hostile import HostileServer, json_answer


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """A hostile workspace (hostile.py) whose list and search routes answer empty, as a real
    workspace does when nothing matches: only the route a test gives an answer misbehaves."""
    server = HostileServer().start()
    server.answer("GET", "/api/2.0/secrets/scopes/list", json_answer({"scopes": []}))
    server.answer("GET", "/api/2.0/mlflow/unity-catalog/model-versions/search", json_answer({"model_versions": []}))
    server.answer("GET", "/api/2.0/serving-endpoints", json_answer({"endpoints": []}))  # plan lists them
    yield server
    server.stop()
