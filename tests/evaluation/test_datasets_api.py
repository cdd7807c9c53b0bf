"""Versioned datasets through the API: every change is a new version and every older
version reads as it was; items from traces carry their corrections and a link back;
uploads refuse bad files whole, naming the line; exports have the shapes fine-tuning
takes (OpenAI chat JSONL, DPO pairs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import Env, make_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _items(env: Env, name: str, **params: Any) -> dict[str, Any]:
    r = env.admin.get(f"/api/datasets/{name}/items", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]  # JSON


def _upload(env: Env, name: str, data: bytes, fmt: str, **params: Any) -> httpx.Response:
    return env.admin.post(
        f"/api/dataset-uploads/{name}",
        params={"format": fmt, **params},
        content=data,
        headers={"content-type": "text/csv" if fmt == "csv" else "application/jsonl"},
    )


def _lines(r: httpx.Response) -> list[Any]:
    assert r.status_code == 200, r.text
    return [orjson.loads(line) for line in r.content.splitlines() if line]


def test_every_change_is_a_version_and_old_versions_read_as_they_were(env: Env) -> None:
    r = env.admin.post(
        "/api/datasets",
        json={
            "name": "qa",
            "description": "capitals",
            "items": [
                {"inputs": {"question": "capital of France?"}, "expected": "Paris"},
                {"inputs": {"question": "capital of Spain?"}, "expected": "Madrid"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["latest"] == 1 and r.json()["item_count"] == 2
    v1 = _items(env, "qa")["items"]
    paris, madrid = v1[0]["id"], v1[1]["id"]

    r = env.admin.post(
        "/api/datasets/qa/versions",
        json={
            "add": [{"inputs": {"question": "capital of Italy?"}, "expected": "Rome"}],
            "update": [{"id": paris, "expected": "Paris, France"}],
            "remove": [madrid],
            "message": "fix and extend",
            "base_version": 1,
        },
    )
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["version"], v["item_count"], v["added"], v["updated"], v["removed"]) == (
        2,
        2,
        1,
        1,
        1,
    )
    assert v["message"] == "fix and extend" and v["author"].startswith("key:")

    latest = _items(env, "qa")
    assert latest["version"] == 2
    assert [(i["id"], i["expected"]) for i in latest["items"]] == [
        (paris, "Paris, France"),
        (latest["items"][1]["id"], "Rome"),
    ]
    old = _items(env, "qa", version=1)["items"]
    assert [(i["id"], i["expected"]) for i in old] == [(paris, "Paris"), (madrid, "Madrid")]

    # an update leaves what it does not give, and may clear expected with null
    r = env.admin.post(
        "/api/datasets/qa/versions", json={"update": [{"id": paris, "expected": None}]}
    )
    assert r.status_code == 201, r.text
    item = _items(env, "qa")["items"][0]
    assert item["inputs"] == {"question": "capital of France?"} and item["expected"] is None

    # a stale base version is refused, and writes nothing
    stale = env.admin.post(
        "/api/datasets/qa/versions",
        json={"add": [{"inputs": {"q": "x"}}], "base_version": 1},
    )
    assert stale.status_code == 409, stale.text
    assert "not the latest" in stale.json()["detail"]
    versions = env.admin.get("/api/datasets/qa/versions").json()
    assert [v["version"] for v in versions] == [3, 2, 1]

    # paging through a version
    page = _items(env, "qa", version=2, limit=1)
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = _items(env, "qa", version=2, cursor=page["next_cursor"])
    assert [i["expected"] for i in rest["items"]] == ["Rome"] and rest["next_cursor"] is None


def test_bad_changes_are_named_and_write_nothing(env: Env) -> None:
    assert env.admin.post("/api/datasets", json={"name": "d"}).status_code == 201
    assert env.admin.post("/api/datasets", json={"name": "d"}).status_code == 409
    cases: list[tuple[Any, str]] = [
        ({}, "empty"),
        ({"add": [{"inputs": {}}]}, "add.0.inputs"),
        ({"add": [{"inputs": {"q": "a\x00b"}}]}, "add.0.inputs"),
        ({"add": [{"inputs": {"q": "x"}, "extra": 1}]}, "add.0.extra"),
        ({"remove": ["it_nope"]}, "it_nope"),
        ({"add": [{"inputs": {"q": "x" * (1 << 20)}}]}, "add.0"),
    ]
    for body, named in cases:
        r = env.admin.post("/api/datasets/d/versions", json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert named in r.text, (named, r.text)
    assert env.admin.get("/api/datasets/d").json()["latest"] == 0
    assert env.admin.get("/api/datasets/d/items").status_code == 404
    assert env.admin.get("/api/datasets/nope/items").status_code == 404
    assert env.admin.post("/api/datasets", json={"name": "../x"}).status_code == 422


def test_uploads_make_one_version_or_nothing_and_name_the_line(env: Env) -> None:
    csv = (
        b"inputs.question,inputs.context,expected,metadata.topic\r\n"
        b'What is 2+2?,"math, basic",4,arith\r\n'
        b"Who wrote Hamlet?,,Shakespeare,\r\n"
    )
    r = _upload(env, "up", csv, "csv", create="true")
    assert r.status_code == 201, r.text
    assert r.json()["item_count"] == 2 and r.json()["source"] == "upload"
    items = _items(env, "up")["items"]
    assert items[0]["inputs"] == {"question": "What is 2+2?", "context": "math, basic"}
    assert items[0]["expected"] == "4" and items[0]["metadata"] == {"topic": "arith"}
    assert items[1]["inputs"] == {"question": "Who wrote Hamlet?", "context": ""}

    jsonl = b'{"inputs": {"input": "hi"}, "expected": {"label": "greeting"}}\n\n'
    jsonl += b'{"inputs": {"input": "bye"}}\n'
    r = _upload(env, "up", jsonl, "jsonl")
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["item_count"] == 4

    bad: list[tuple[bytes, str, str]] = [
        (b"question,expected\nx,y\n", "csv", "line 1: unknown column 'question'"),
        (b"expected\ny\n", "csv", "line 1: no input column"),
        (b"input,expected\na,b\nc\n", "csv", "line 3: 1 fields, the header has 2"),
        (b"input,expected\na,b\n\xff\xfe,c\n", "csv", "line 3: not UTF-8"),
        (b'input\n"open\n', "csv", "line 2"),
        (b'{"inputs": {"a": 1}}\n{"inputs": 5}\n', "jsonl", "line 2 inputs"),
        (b'{"inputs": {"a": 1}}\nnot json\n', "jsonl", "line 2: not JSON"),
        (b'{"inputs": {"a": 1}}\n[1]\n', "jsonl", "line 2: each line is a JSON object"),
        (b"", "jsonl", "no items"),
    ]
    for data, fmt, named in bad:
        r = _upload(env, "up", data, fmt)
        assert r.status_code == 400 or r.status_code == 422, (data, r.text)
        body = r.json()
        assert named.replace(" inputs", "") in body["detail"], (named, body)
        assert "Traceback" not in r.text
    assert env.admin.get("/api/datasets/up").json()["latest"] == 2  # nothing half-imported

    assert _upload(env, "missing", jsonl, "jsonl").status_code == 404
    assert _upload(env, "up", jsonl, "xml").status_code == 422


def test_an_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    for env in make_env(tmp_path, dataset_upload_max_bytes=2048):
        data = b'{"inputs": {"input": "' + b"x" * 4000 + b'"}}\n'
        r = _upload(env, "big", data, "jsonl", create="true")
        assert r.status_code == 413, r.text
        assert env.admin.get("/api/datasets/big").status_code == 404


def test_exports_have_the_shapes_fine_tuning_takes(env: Env) -> None:
    items = [
        {
            "inputs": {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ]
            },
            "expected": "Hello!",
            "metadata": {"rejected": "Greetings, dear user, how may I..."},
        },
        {"inputs": {"question": "2+2?"}, "expected": "4", "metadata": {"thumbs": 1}},
        {"inputs": {"question": "2+2?"}, "expected": None, "metadata": {"rejected": "5"}},
        {"inputs": {"question": "no answer yet"}},
    ]
    assert env.admin.post("/api/datasets", json={"name": "ft", "items": items}).status_code == 201

    r = env.admin.get("/api/datasets/ft/export", params={"format": "openai"})
    rows = _lines(r)
    assert r.headers["x-shipyard-skipped"] == "2"
    assert rows == [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    for row in rows:  # the shape OpenAI's fine-tuning validates
        assert set(row) == {"messages"}
        assert row["messages"][-1]["role"] == "assistant"
        assert all(
            set(m) == {"role", "content"} and isinstance(m["content"], str) for m in row["messages"]
        )

    pairs = _lines(env.admin.get("/api/datasets/ft/export", params={"format": "dpo"}))
    assert pairs == [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Greetings, dear user, how may I..."}],
        },
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
    ]
    plain = _lines(env.admin.get("/api/datasets/ft/export"))
    assert [p["inputs"] for p in plain] == [i["inputs"] for i in items]
    assert env.admin.get("/api/datasets/ft/export", params={"format": "x"}).status_code == 422


def test_items_from_traces_carry_corrections_thumbs_and_a_link(env: Env) -> None:
    env.provider()
    env.route("support")
    key, _ = env.key("widget", role="app")
    trace_ids = []
    for text in ("hello", "bonjour"):
        r = httpx.post(
            f"{env.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "support", "messages": [{"role": "user", "content": text}]},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        trace_ids.append(r.headers["x-shipyard-trace-id"])
    fb = httpx.post(
        f"{env.url}/api/feedback",
        headers={"Authorization": f"Bearer {key}"},
        json={"trace_id": trace_ids[0], "thumbs": "down", "correction": "Hi there!"},
    )
    assert fb.status_code == 202, fb.text
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()

    assert env.admin.post("/api/datasets", json={"name": "from-prod"}).status_code == 201
    denied = httpx.post(
        f"{env.url}/api/datasets/from-prod/from-traces",
        headers={"Authorization": f"Bearer {key}"},
        json={"trace_ids": trace_ids},
    )
    assert denied.status_code == 403
    r = env.admin.post("/api/datasets/from-prod/from-traces", json={"trace_ids": trace_ids})
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "traces" and r.json()["item_count"] == 2
    first, second = _items(env, "from-prod")["items"]
    assert first["source_trace_id"] == trace_ids[0]
    assert first["inputs"] == {"messages": [{"role": "user", "content": "hello"}]}
    assert first["expected"] == "Hi there!"
    assert first["metadata"]["thumbs"] == -1 and first["metadata"]["route"] == "support"
    assert first["metadata"]["rejected"] == first["metadata"]["output"] != ""
    assert second["expected"] == second["metadata"]["output"] != ""
    pairs = _lines(env.admin.get("/api/datasets/from-prod/export", params={"format": "dpo"}))
    assert [p["chosen"][0]["content"] for p in pairs] == ["Hi there!"]

    missing = env.admin.post("/api/datasets/from-prod/from-traces", json={"trace_ids": ["0" * 32]})
    assert missing.status_code == 404 and "trace_ids.0" in missing.text
    assert env.admin.get("/api/datasets/from-prod").json()["latest"] == 1


def test_the_list_counts_each_latest_version_in_one_query(env: Env) -> None:
    from sqlalchemy import event

    for n in range(6):
        items = [{"inputs": {"q": f"{n}-{i}"}} for i in range(n)]
        r = env.admin.post("/api/datasets", json={"name": f"ds{n}", "items": items})
        assert r.status_code == 201, r.text
    engine = env.app.state.platform.db.engine
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "dataset" in statement.lower():
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        r = env.admin.get("/api/datasets")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 200, r.text
    assert [(d["name"], d["item_count"]) for d in r.json()] == [(f"ds{n}", n) for n in range(6)]
    assert len(seen) == 1, seen  # not one more a dataset
