"""Property-based testing of every operation in the API's own OpenAPI document.

schemathesis generates valid and invalid requests from /api and sends them to a real
uvicorn serving the sample registry. No input may produce a server error, and every
client error must be an RFC 9457 problem+json body.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from conftest import bearer

EXAMPLES_PER_OPERATION = 40


@schemathesis.check
def client_errors_are_problem_json(ctx, response, case) -> None:
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/problem+json"), (
            f"{case.path}: {response.status_code} answered as {content_type}"
        )
        assert response.json()["detail"], "a problem must say what was wrong"


def test_no_server_errors_on_any_operation(live_server, admin_token):
    schema = schemathesis.openapi.from_url(live_server.url + "/api")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every OGC path per collection, tiles, reports, exports
    failures: list[str] = []
    calls = {"count": 0}
    strategies = [
        (operation, mode, operation.as_strategy(generation_mode=mode))
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    for operation, mode, strategy in strategies:

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def exercise(case) -> None:
            calls["count"] += 1
            case.call_and_validate(
                base_url=live_server.url,
                headers=bearer(admin_token),
                checks=[not_a_server_error, client_errors_are_problem_json],
            )

        try:
            exercise()
        except Unsatisfiable:
            # nothing negative exists for this operation (e.g. a free string path parameter)
            assert mode is GenerationMode.NEGATIVE, operation.path
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert calls["count"] >= len(operations) * 10  # the requests were really made
