"""The OpenAPI part for OpenAI's fine-tuning API (`/v1/fine_tuning/jobs`), merged into
`/openapi.json` (`Capability.openapi`)."""

from __future__ import annotations

from typing import Any

from shipyard.http.openai_app import (
    OBJECTS,
    Schema,
    list_of,
    obj,
    operation,
    path_params,
    ref,
)

S, N = {"type": "string"}, {"type": "integer"}
NULLABLE_S, NULLABLE_N = {"type": ["string", "null"]}, {"type": ["integer", "null"]}
OBJECT_SCHEMAS: dict[str, Schema] = {
    "FineTuningJob": obj(
        id=S, object={"type": "string", "enum": ["fine_tuning.job"]}, model=S, created_at=N,
        finished_at=NULLABLE_N, fine_tuned_model=NULLABLE_S, organization_id=S,
        status={"type": "string", "enum": ["validating_files", "queued", "running",
                                           "succeeded", "failed", "cancelled"]},
        training_file=S, validation_file=NULLABLE_S, hyperparameters={"type": "object"},
        trained_tokens=NULLABLE_N, error={"type": ["object", "null"]}, seed=N,
        method={"type": "object"}, step=N, total_steps=N,
    ),
    "FineTuningJobEvent": obj(
        id=S, object={"type": "string", "enum": ["fine_tuning.job.event"]}, created_at=N,
        level=S, message=S, type=S, data={"type": ["object", "null"]},
    ),
    "FineTuningJobCheckpoint": obj(
        id=S, object={"type": "string", "enum": ["fine_tuning.job.checkpoint"]},
        created_at=N, fine_tuned_model_checkpoint=S, fine_tuning_job_id=S, step_number=N,
        metrics={"type": "object"},
    ),
}  # fmt: skip


def _op(summary: str, reply: Schema, body: str | None = None, **extra: Any) -> Schema:
    return operation("openai: fine-tuning", summary, reply, body, **extra)


def _paged(*names: str) -> list[Schema]:
    return [
        *path_params(*names),
        {"name": "after", "in": "query", "required": False, "schema": S},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    ]  # fmt: skip


def document() -> Schema:
    from shipyard.training.schemas import JobIn

    schemas = dict(OBJECT_SCHEMAS)
    schemas["FineTuningJobCreate"] = JobIn.model_json_schema(ref_template=OBJECTS + "{model}")
    for name, sub in schemas["FineTuningJobCreate"].pop("$defs", {}).items():
        schemas[name] = sub
    job = "/v1/fine_tuning/jobs/{job_id}"
    one = path_params("job_id")
    paths = {
        "/v1/fine_tuning/jobs": {
            "post": _op("Create a fine-tuning job", ref("FineTuningJob"), "FineTuningJobCreate"),
            "get": _op("List fine-tuning jobs", list_of("FineTuningJob"), parameters=_paged()),
        },
        job: {"get": _op("Retrieve a fine-tuning job", ref("FineTuningJob"), parameters=one)},
        job + "/cancel": {
            "post": _op("Cancel a fine-tuning job", ref("FineTuningJob"), parameters=one)
        },
        job + "/events": {
            "get": _op("A job's events, newest first", list_of("FineTuningJobEvent"),
                       parameters=_paged("job_id")),
        },
        job + "/checkpoints": {
            "get": _op("A job's checkpoints", list_of("FineTuningJobCheckpoint"),
                       parameters=_paged("job_id")),
        },
    }  # fmt: skip
    return {"paths": paths, "components": {"schemas": schemas}}
