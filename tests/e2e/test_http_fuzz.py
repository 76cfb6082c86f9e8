"""A property-based fuzz of journey serve from its own OpenAPI document (schemathesis): whatever a
client sends to the write and read endpoints, the server answers without a 5xx, and what it answers
matches the schema it documents."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .test_http import TOKEN, basic, server  # noqa: F401 - the server fixture

WRITE = basic()
READ = {"Authorization": f"Bearer {TOKEN}"}


def test_no_input_makes_the_server_fail(server):  # noqa: F811
    url, _ = server
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers(case):
            response = case.call(headers=WRITE if case.method == "POST" else READ)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        answers()
