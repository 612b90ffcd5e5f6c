"""Property-based run of the OpenAPI schema against the app (schemathesis) with every check it has: no 5xx,
every status and content type and every response body as documented, schema-invalid requests rejected,
schema-valid ones accepted, required headers enforced, authentication not ignored.

The app gets a database of its own and a file-system broker that no worker reads, so the jobs the
generated requests create are stored and enqueued but never run; SSE streams of such jobs end after
``SQSNN_SSE_MAX_S`` (0.5 s here).

One documented exception: a submission can be well formed and still be refused with a 422 naming the field
for facts no JSON schema can state (the backend is not in the registry, the model does not exist, the images
do not fit the model, the Idempotency-Key was used with another body), so ``positive_data_acceptance``
accepts 422 for ``POST /v1/jobs`` and only there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from service.app import create_app
from service.auth import create_key

pytestmark = pytest.mark.service

POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429"]
CONFIG = {
    "operations": [
        {
            "include-path": "/v1/jobs",
            "include-method": "POST",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_DEFAULT, "422"]}},
        }
    ]
}


@pytest.fixture
def fuzz_app(scratch_database, alembic_cfg, tmp_path, settings) -> Iterator[tuple[object, str]]:
    from alembic import command

    command.upgrade(alembic_cfg(scratch_database), "head")
    app_settings = settings.model_copy(
        update={
            "database_url": scratch_database,
            "broker_url": None,
            "redis_url": None,
            "home": tmp_path,
            "sse_max_s": 0.5,
            "max_active_jobs": 10**6,
        }
    )
    app = create_app(app_settings)
    with app.state.sessions() as s:
        key = create_key(s, app_settings, "fuzzer")
    yield app, key
    app.state.db.dispose()


EXAMPLES_PER_OPERATION = 40


def test_schema_holds_under_every_check(fuzz_app) -> None:
    app, key = fuzz_app
    # the key goes through the schema's security scheme, so the auth checks know which credentials are real
    config = SchemathesisConfig.from_dict({**CONFIG, "auth": {"openapi": {"HTTPBearer": {"bearer": key}}}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    tested = []
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            try:
                response = case.call_and_validate()
            except (AssertionError, BaseExceptionGroup) as exc:  # collect every failure, report them together
                failures.append(f"{case.operation.label}: {str(exc)[:600]}")
                return
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        check()
        tested.append(operation.label)
    print(f"\nschemathesis: {len(tested)} operations, statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures[:10])
    assert len(tested) >= 13
    # the generated requests got through authentication and validation too, not only 4xx
    assert statuses.get(200, 0) > 0 and statuses.get(202, 0) > 0, statuses
