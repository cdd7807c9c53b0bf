"""Schemathesis over `/api`, in process: every operation of the platform API fuzzed from
the OpenAPI document the app serves (valid and invalid data), authenticated with the
bootstrap admin key, then stateful: sequences of calls that feed one response into the
next call (links Schemathesis infers from the schema: a key created, then revoked; a
route put, then deleted). Nothing may answer a 5xx, and what the document promises
(content types, response schemas, auth) must hold."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    use_after_free,
)
from sqlalchemy import delete
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import load_settings
from tests.conftest import ADMIN_PASSWORD, _pg_database

CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
    use_after_free,
]


@dataclass
class Target:
    app: Any
    headers: dict[str, str]
    key_id: str  # the admin's own key and account: revoking or disabling them ends the run
    user_id: str


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """The app on each store (PostgreSQL refuses what SQLite takes: a NUL in a string)."""
    url = None
    if request.param == "postgres":
        url = _pg_database(request.getfixturevalue("pg_server"))
    cfg = load_settings(
        home=tmp_path_factory.mktemp("schemathesis") / "home",
        database_url=url,
        admin_password=ADMIN_PASSWORD,
        admin_email="admin@example.com",
        allowed_hosts=["testserver"],  # the Host Schemathesis' in-process client sends
        # documents stay queued: an example replayed must meet the state its first run
        # met (an indexing that finished in between turns a cancel's 200 into a 409)
        kb_index_workers=0,
    )
    # The first start creates the admin and its key; Schemathesis then runs the app's
    # lifespan itself (once per process), so it gets an app that has started before.
    with TestClient(create_app(cfg), base_url="http://testserver") as first:
        key = orjson.loads(cfg.credentials_path.read_bytes())["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        users = first.get("/api/users", headers=headers).json()
        own = [k for k in first.get("/api/keys", headers=headers).json() if k["kid"] in key]
    admin = next(u for u in users if u["email"] == "admin@example.com")
    yield Target(create_app(cfg), headers, own[0]["id"], admin["id"])
    shutdown_lifespans()


@pytest.fixture(scope="module")
def api(target: Target) -> Any:
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", target.app, headers=dict(target.headers)
    )
    schema = schema.include(path_regex=r"^/api/")

    @schema.hook("filter_path_parameters")
    def keep_the_caller(context: Any, path_parameters: dict[str, Any] | None) -> bool:
        values = {str(v) for v in (path_parameters or {}).values()}
        return not {target.key_id, target.user_id} & values

    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_operations(api: Any, target: Target, mode: GenerationMode) -> None:
    """Each operation on its own (so each gets its examples): data that fits the schema
    and data that does not. Every operation's failure is reported, not only the first."""
    failures = []
    for result in api.get_all_operations():
        operation = result.ok()

        @settings(max_examples=settings().max_examples // 3)  # 8 in the ci profile
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.call_and_validate(headers=target.headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # reported together below
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_api_stateful(api: Any, target: Target) -> None:
    base = api.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]  # built from the schema at run time
        def setup(self) -> None:
            # registry and knowledge-base names are unique: an example replayed against
            # what its first run created would get 409s where it got 201s (Hypothesis
            # calls that flaky), so every example starts from an empty registry
            from shipyard.registry.tables import AssetRow, CatalogRow
            from shipyard.retrieval.tables import KnowledgeBaseRow

            with target.app.state.platform.db.transaction() as s:
                s.execute(delete(AssetRow))
                s.execute(delete(CatalogRow))
                s.execute(delete(KnowledgeBaseRow))  # names are unique too

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": target.headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, headers=target.headers)

    Workflow.run(settings=settings(max_examples=settings().max_examples, stateful_step_count=6))


def test_schemathesis_sees_the_whole_api(api: Any) -> None:
    """The suite fuzzes every /api operation (none was lost to a schema it cannot read)."""
    operations = [result.ok() for result in api.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/api/keys", "/api/audit", "/api/gateway/routes/{name}"} <= paths
    assert len(operations) >= 20, sorted(paths)
