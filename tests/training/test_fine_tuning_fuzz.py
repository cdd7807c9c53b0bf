"""Property-based fuzzing of `/v1/fine_tuning`: job bodies generated from the schema the
app publishes in /openapi.json (with a real training file's id mixed in), then mutated
(a field replaced by any JSON value, bodies that are not objects, bytes that are not
JSON), and hostile paging parameters. The property: every answer is a 2xx, or a 4xx in
OpenAI's error shape with a message; never a 5xx. Nothing trains here
(`training_jobs=0`): a job that is accepted stays queued."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import JSON, from_schema
from tests.gateway.conftest import Env, make_env
from tests.training.support import example, jsonl

pytestmark = pytest.mark.local_model
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class World(tuple[Env, str, Any]):
    """The server, a training file's id and the OpenAPI document (a short repr: Hypothesis
    prints the arguments of a failing example)."""

    def __repr__(self) -> str:
        return "World(...)"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, str, Any]]:
    for env in make_env(tmp_path_factory.mktemp("ft-fuzz"), training_jobs=0):
        files = {"file": ("t.jsonl", io.BytesIO(jsonl([example(0), example(1)])))}
        file_id = env.admin.post("/v1/files", files=files, data={"purpose": "fine-tune"}).json()
        doc = env.admin.get("/openapi.json").json()
        yield World((env, file_id["id"], doc))


def _inline(node: Any, schemas: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _inline(schemas[ref.rsplit("/", 1)[-1]], schemas)
        return {k: _inline(v, schemas) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, schemas) for v in node]
    return node


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["message"], r.text


def test_the_schema_is_published(world: tuple[Env, str, Any]) -> None:
    _, _, doc = world
    assert {"/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job_id}/events"} <= set(doc["paths"])
    assert "FineTuningJobCreate" in doc["components"]["schemas"]


@FUZZ
@given(data=st.data())
def test_job_bodies_are_answered_without_a_5xx(
    world: tuple[Env, str, Any], data: st.DataObject
) -> None:
    env, file_id, doc = world
    schema = _inline(
        doc["components"]["schemas"]["FineTuningJobCreate"], doc["components"]["schemas"]
    )
    body = data.draw(from_schema(schema))
    if data.draw(st.booleans()):
        body["training_file"] = file_id
        body["model"] = data.draw(st.sampled_from(["smollm2", body.get("model", "x")]))
    if data.draw(st.booleans()) and body:  # one field replaced by any JSON value
        key = data.draw(st.sampled_from(sorted(body)))
        body[key] = data.draw(JSON)
    _check(env.admin.post("/v1/fine_tuning/jobs", content=orjson.dumps(body),
                          headers={"content-type": "application/json"}))  # fmt: skip


@FUZZ
@given(raw=st.one_of(JSON.map(orjson.dumps), st.binary(max_size=64)))
def test_bodies_that_are_not_objects_get_a_4xx(world: tuple[Env, str, Any], raw: bytes) -> None:
    env, _, _ = world
    r = env.admin.post("/v1/fine_tuning/jobs", content=raw,
                       headers={"content-type": "application/json"})  # fmt: skip
    _check(r)
    assert r.status_code == 400 or r.is_success


@FUZZ
@given(
    path=st.sampled_from(["", "/{job}", "/{job}/events", "/{job}/checkpoints", "/{job}/cancel"]),
    job=st.one_of(st.just("real"), st.text(max_size=80)),
    params=st.dictionaries(st.sampled_from(["after", "limit"]), st.text(max_size=30), max_size=2),
)
def test_paths_and_paging_are_answered_without_a_5xx(
    world: tuple[Env, str, Any], path: str, job: str, params: dict[str, str]
) -> None:
    env, file_id, _ = world
    if job == "real":
        made = env.admin.post("/v1/fine_tuning/jobs",
                              json={"model": "smollm2", "training_file": file_id})  # fmt: skip
        job = made.json()["id"]
    url = "/v1/fine_tuning/jobs" + path.replace("{job}", quote(job, safe=""))
    method = "POST" if path.endswith("/cancel") else "GET"
    _check(env.admin.request(method, url, params=params))
