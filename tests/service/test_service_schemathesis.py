"""Property-based run of the OpenAPI schema against the app (schemathesis): no request gives a 5xx.

The app gets a database of its own and a file-system broker that no worker reads, so the jobs the
generated requests create are stored and enqueued but never run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from service.app import create_app
from service.auth import create_key

pytestmark = pytest.mark.service


@pytest.fixture
def fuzz_app(scratch_database, alembic_cfg, tmp_path, settings) -> Iterator[tuple[object, str]]:
    from alembic import command

    command.upgrade(alembic_cfg(scratch_database), "head")
    app_settings = settings.model_copy(
        update={"database_url": scratch_database, "broker_url": None, "redis_url": None, "home": tmp_path}
    )
    app = create_app(app_settings)
    with app.state.sessions() as s:
        key = create_key(s, app_settings, "fuzzer")
    yield app, key
    app.state.sessions.kw["bind"].dispose()


EXAMPLES_PER_OPERATION = 15


def test_no_server_errors(fuzz_app) -> None:
    app, key = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {key}"}
    tested = []
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={**(case.headers or {}), **headers})
            case.validate_response(response, checks=[not_a_server_error])
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        check()
        tested.append(operation.label)
    assert len(tested) >= 12
    # the generated requests got through authentication and validation too, not only 4xx
    assert statuses.get(200, 0) > 0 and statuses.get(202, 0) > 0, statuses
