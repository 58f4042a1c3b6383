"""Fuzzing from the server's own /openapi.json with schemathesis: no request, valid or not,
gets a 5xx, invalid ones are rejected with a 4xx, and every answer is documented (status,
content type, body schema). Bounded: a fixed number of examples per operation and mode."""

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.errors import Unsatisfiable

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[dev]' to fuzz")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi import checks  # noqa: E402

EXAMPLES = 20  # per operation and mode: 12 operations x 2 modes x 20, about 20 s
CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


def test_fuzzed_requests_get_documented_answers_and_no_5xx(live):
    _, client = live
    base_url = f"http://{client.host}:{client.port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12
    failures, calls = [], []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,  # the same examples every run
                database=None,
                phases=[Phase.explicit, Phase.generate],  # report, do not shrink
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                # schemathesis writes a path parameter's "?" and "#" unescaped, so such a
                # request reaches another endpoint than the operation under test.
                params = (case.path_parameters or {}).values()
                assume(not any("?" in str(v) or "#" in str(v) for v in params))
                response = case.call_and_validate(base_url=base_url, checks=CHECKS)
                calls.append(response.status_code)

            try:
                check()
            except Unsatisfiable:  # no parameters nor body: nothing to make invalid
                assert mode == schemathesis.GenerationMode.NEGATIVE
            except Exception as err:  # collect every operation's failure, not just the first
                failures.append(f"{operation.label} ({mode.value}): {err}")
    assert failures == [], "\n\n".join(failures)
    assert len(calls) > 200
    assert 200 in calls and 400 in calls and 404 in calls
