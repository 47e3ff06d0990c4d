"""Contract fuzzing: schemathesis generates positive and negative requests from the app's own
OpenAPI schema and sends them in-process to the real app (real model, real FAISS index). Every
response must be a non-5xx, a status the schema declares, and a body matching the schema."""

from __future__ import annotations

import contextlib
import itertools
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from app.main import create_app
from app.settings import Settings as AppSettings
from tests.reliability.conftest import ADMIN_KEY

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 100  # per operation and mode: ~15 s here, well under 2 min on busy cores

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture()
def api_schema(photo_index, starter_encoder):
    app_settings = AppSettings(
        index=photo_index, admin_api_key=ADMIN_KEY, max_body_bytes=1024 * 1024
    )
    app = create_app(app_settings, encoder=starter_encoder)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    deadline = time.monotonic() + 120
    while app.state.engine is None:
        assert not app.state.load_error, app.state.load_error
        assert time.monotonic() < deadline, "service did not become ready"
        time.sleep(0.05)
    yield schema
    asgi.shutdown_lifespans()


def _fuzz(op, mode: GenerationMode, headers: dict[str, str] | None) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    with contextlib.suppress(Unsatisfiable):  # no negative form (no parameters, no body)
        run()


def _operations(schema) -> list:
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 8, [op.label for op in ops]
    return ops


def test_every_operation_honours_its_contract(api_schema):
    # Driven by hand (one hypothesis run per operation) rather than by schema.parametrize():
    # the schema needs the session's real index, which only exists as a fixture.
    # Both modes in one test: schemathesis' pytest plugin stops the app's lifespan after each test.
    failures = []
    for mode, op in itertools.product(GenerationMode, _operations(api_schema)):
        # Admin routes get the key so the fuzzer reaches the reload logic, not just the 401.
        headers = {"X-API-Key": ADMIN_KEY} if op.path.startswith("/admin") else None

        try:
            _fuzz(op, mode, headers)
        except Exception as e:  # noqa: BLE001 - gather every operation's failure, then report
            failures.append(f"{mode.value} {op.label}: {e}")
    assert not failures, "\n\n".join(failures)
