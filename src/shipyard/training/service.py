"""The training service: fine-tuning jobs, run one after another in worker processes,
and the models they make, served at once as `ft:<base>:<suffix>:<id>` on the gateway.

    create   checks the files (JSONL, line by line) and the base model (a local GGUF chat
             route), writes the job `queued`
    runner   claims due jobs (queued, or running under a lease that ran out: a server
             stopped), starts `shipyard.training.worker` at a lower priority with its
             threads capped, stores what it reports (events, metrics, checkpoints) and
             renews the lease meanwhile; a job cancelled (by any replica) is stopped at
             the next renewal, a claimed job with a checkpoint resumes from it
    success  the job's model made servable in one transaction: a llama.cpp provider
             (its GGUF adapter on the base route's GGUF) and a route named as the model
             (`ft:<base>:<suffix>:<id>`, served like any route: budgets, records,
             traces, registry aliases), and a registry version with its lineage
             (`outcome.py`: those, the validation runs, the job's events)

Each job's files live under `<home>/training/<job id>/`: its training and validation
files, the worker's spec and log, checkpoints, the final adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import os
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import or_, select, update

from shipyard.errors import ConfigError, InvalidInput, NotFound
from shipyard.identity.actor import Actor
from shipyard.identity.stored import actor_json
from shipyard.store import new_id, utcnow
from shipyard.training import outcome
from shipyard.training.launch import Launch, LocalLaunch, RayLaunch
from shipyard.training.schemas import DEFAULTS, EXTRAS
from shipyard.training.tables import CheckpointRow, JobRow

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.training.schemas import JobIn

log = logging.getLogger("shipyard.training")
PREFIX = "ft"
BASE_LR = 2e-4  # learning_rate_multiplier 1 (LoRA on a small model)
BASE_LR_DPO = 5e-5  # preference tuning moves the model less per step
ACTIVE = ("queued", "running")
NICE = 10  # the worker's priority below the server's
METRICS = ("step", "total_steps", "train_loss", "tokens_per_s", "seconds", "reward_accuracy",
           "reward_margin")  # fmt: skip


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class Training:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.worker = new_id("wk")
        self.root = Path(self.settings.home) / "training"
        self.bases = Path(self.settings.training_bases or self.root / "bases")
        self.lease = timedelta(seconds=self.settings.training_lease_seconds)
        if self.settings.ray_address:
            from shipyard import ray_cluster

            ray_cluster.configure(self.settings.ray_address)
        self.active: dict[str, asyncio.Task[None]] = {}
        self.procs: dict[str, Launch] = {}
        self.wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    # lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        if self.settings.training_jobs > 0:
            self._loop = asyncio.create_task(self._claiming(), name="training-runner")

    async def stop(self) -> None:
        held = list(self.active)  # the tasks' callbacks empty `active` as they end
        for launch in list(self.procs.values()):
            launch.terminate()
        tasks = [t for t in (self._loop, *self.active.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if held:  # another server resumes them at once, from their checkpoints
            await asyncio.to_thread(self._release, held)
        self.active.clear()

    def poke(self) -> None:
        """Claim now rather than at the next poll (thread-safe)."""
        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):
                self._event_loop.call_soon_threadsafe(self.wake.set)

    # jobs ---------------------------------------------------------------------------------

    def create(self, actor: Actor, body: JobIn) -> JobRow:
        """A new queued job (in a thread): its files and base model checked first."""
        from shipyard.retrieval.tables import FileRow
        from shipyard.training import data
        from shipyard.training.base import converter_dir

        method = body.method_type()
        if method not in (data.SUPERVISED, data.DPO):
            raise InvalidInput(
                f"method: {method} is not available here (supervised or dpo)", param="method"
            )
        if method == data.DPO and importlib.util.find_spec("trl") is None:
            raise InvalidInput(
                "method: dpo needs trl (the train extra: pip install 'shipyard[train]')",
                param="method",
            )
        base = self._base(actor.workspace_id, body.model)
        if converter_dir() is None:
            raise InvalidInput(
                "model: fine-tuned models are served by llama.cpp, and its adapter converter "
                "is not installed (scripts/setup.sh installs it)",
                param="model",
            )
        suffix = body.suffix or "shipyard"
        if len(f"{PREFIX}:{body.model}:{suffix}:") + 16 > 128:
            raise InvalidInput(
                "suffix: the model's name (ft:<model>:<suffix>:<id>) would be over 128 "
                "characters; give a shorter suffix",
                param="suffix",
            )
        hyper = body.resolved()
        with self.platform.db.transaction() as s:
            for field, file_id in (
                ("training_file", body.training_file),
                ("validation_file", body.validation_file),
            ):
                if file_id is None:
                    continue
                row = s.get(FileRow, file_id[:64])
                if row is None or row.workspace_id != actor.workspace_id:
                    raise InvalidInput(f"{field}: no file with id '{file_id[:64]}'", param=field)
                if row.purpose != "fine-tune":
                    raise InvalidInput(
                        f"{field}: file '{row.id}' was uploaded with purpose '{row.purpose}', "
                        "not 'fine-tune'",
                        param=field,
                    )
                try:
                    examples = data.read(row.data, method, name=row.filename)
                except InvalidInput as exc:  # named as the job's field
                    raise InvalidInput(f"{field}: {exc.detail}", param=field) from None
                if field == "training_file":
                    hyper["batch_size"] = min(hyper["batch_size"], len(examples))
            job = JobRow(
                id=new_id("ftjob"), workspace_id=actor.workspace_id, model=body.model,
                method=method, training_file=body.training_file,
                validation_file=body.validation_file, suffix=body.suffix or "",
                hyperparameters=hyper, seed=body.seed if body.seed is not None else 42,
                base=base, status="queued", meta=body.metadata or {}, created_by=actor.ref,
                actor=actor_json(actor),
                step=0, total_steps=0, trained_tokens=0, worker="",
            )  # fmt: skip
            s.add(job)
            s.flush()
            self._event(s, job.id, f"Created fine-tuning job: {job.id}")
            _audit(s, actor, "fine_tuning.create", job.id)
            s.expunge(job)
        self.poke()
        return job

    def _base(self, workspace_id: str, model: str) -> dict[str, Any]:
        """The base route's GGUF and llama.cpp options (a 400 unless it is one)."""
        gateway = self.platform.services.get("gateway")
        route = gateway.snapshot.route(workspace_id, model) if gateway is not None else None
        if route is None or route.kind != "chat":
            raise InvalidInput(f"model: no chat model '{model}' to fine-tune", param="model")
        for dep in route.deployments:
            path = str(dep.provider.options.get("model_path") or "")
            if dep.provider.kind == "llama_cpp" and path.endswith(".gguf") and Path(path).is_file():
                options = {k: v for k, v in dep.provider.options.items() if k != "lora_path"}
                return {"gguf": path, "options": options, "timeouts": asdict(dep.timeouts)}
        raise InvalidInput(
            f"model: '{model}' is not a local GGUF model served by llama.cpp; only those "
            "are fine-tuned here",
            param="model",
        )

    def cancel(self, actor: Actor, job_id: str) -> JobRow:
        with self.platform.db.transaction() as s:
            job = self.job(s, actor, job_id, lock=True)
            if job.status not in ACTIVE:
                raise InvalidInput(
                    f"job_id: job '{job.id}' is {job.status}; only a queued or running job "
                    "can be cancelled",
                    param="job_id",
                )
            job.status, job.finished_at, job.lease_until = "cancelled", utcnow(), None
            self._event(s, job.id, "The job was cancelled")
            _audit(s, actor, "fine_tuning.cancel", job.id)
            s.flush()
            s.expunge(job)
        proc = self.procs.get(job.id)
        if proc is not None and self._event_loop is not None:
            with contextlib.suppress(RuntimeError):
                self._event_loop.call_soon_threadsafe(proc.terminate)
        return job

    @staticmethod
    def job(s: Any, actor: Actor, job_id: str, *, lock: bool = False) -> JobRow:
        """The caller's job; `lock` holds its row to the end of the transaction (a change
        that depends on its status, made while the runner may change it too)."""
        row = s.get(JobRow, job_id[:64], with_for_update=True if lock else None)
        if row is None or row.workspace_id != actor.workspace_id:
            raise NotFound(f"no fine-tuning job with id '{job_id[:64]}'", param="job_id")
        return row  # type: ignore[no-any-return]  # a JobRow

    _event = staticmethod(outcome.add_event)

    def _note(self, job_id: str, message: str) -> None:
        with self.platform.db.transaction() as s:
            self._event(s, job_id, message)

    # the runner ---------------------------------------------------------------------------

    async def _claiming(self) -> None:
        while True:
            try:
                free = self.settings.training_jobs - len(self.active)
                if free > 0:
                    for job_id in await asyncio.to_thread(self._claim, free):
                        task = asyncio.create_task(self._run(job_id), name=f"ft-{job_id}")
                        self.active[job_id] = task
                        task.add_done_callback(functools.partial(self._finished, job_id))
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("claiming fine-tuning jobs failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=2.0)

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self.active.get(job_id) is task:
            del self.active[job_id]

    def _claim(self, free: int) -> list[str]:
        now = utcnow()
        claimed: list[str] = []
        with self.platform.db.transaction() as s:
            due = or_(
                JobRow.status == "queued",
                (JobRow.status == "running")
                & (or_(JobRow.lease_until.is_(None), JobRow.lease_until < now)),
            )
            for job_id in s.scalars(
                select(JobRow.id).where(due).order_by(JobRow.created_at).limit(free)
            ).all():
                took = s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, due)
                    .values(status="running", worker=self.worker, lease_until=now + self.lease)
                )
                if took.rowcount == 1:  # type: ignore[attr-defined]  # a CursorResult
                    claimed.append(job_id)
        return claimed

    def _release(self, ids: list[str]) -> None:
        with self.platform.db.transaction() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id.in_(ids), JobRow.worker == self.worker, JobRow.status == "running")
                .values(lease_until=None, worker="")
            )

    def _prepare(self, job_id: str) -> Path:
        """The job's folder: its files written out, the worker's spec (resuming from the
        newest checkpoint that is on disk)."""
        from shipyard.retrieval.tables import FileRow

        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        with self.platform.db.transaction() as s:
            job = s.get(JobRow, job_id, with_for_update=True)
            assert job is not None
            files: dict[str, str | None] = {"train": None, "validation": None}
            for key, file_id in (("train", job.training_file), ("validation", job.validation_file)):
                if file_id is None:
                    continue
                path = folder / f"{key}.jsonl"
                if not path.is_file():
                    row = s.get(FileRow, file_id)
                    if row is None:
                        raise RuntimeError(f"the file '{file_id}' was deleted")
                    path.write_bytes(row.data)
                files[key] = str(path)
            resume = None
            for ckpt in s.scalars(
                select(CheckpointRow)
                .where(CheckpointRow.job_id == job_id)
                .order_by(CheckpointRow.step.desc())
            ):
                saved = Path(ckpt.path)  # whole: our own state, or a Trainer's
                if (saved / "state.pt").is_file() or (saved / "trainer_state.json").is_file():
                    resume = ckpt.path
                    break
            if job.started_at is None:
                job.started_at = utcnow()
                self._event(s, job_id, "Fine-tuning job started")
            hyper = job.hyperparameters
            threads = self.settings.training_threads or default_threads()
            spec = {
                "base_gguf": job.base["gguf"],
                "base_dir": str(self.bases / (Path(job.base["gguf"]).stem + "-hf")),
                "train": files["train"], "validation": files["validation"],
                "out": str(folder), "method": job.method, "seed": job.seed,
                "threads": threads, "nice": NICE, "parent": os.getpid(), "resume": resume,
                "n_epochs": hyper["n_epochs"], "batch_size": hyper["batch_size"],
                "learning_rate": (BASE_LR_DPO if job.method == "dpo" else BASE_LR)
                * hyper["learning_rate_multiplier"],
                "beta": hyper.get("beta", DEFAULTS["beta"]),
                **{k: hyper[k] for k in EXTRAS},
            }  # fmt: skip
        path = folder / "spec.json"
        path.write_bytes(orjson.dumps(spec, option=orjson.OPT_INDENT_2))
        return path

    async def _run(self, job_id: str) -> None:
        proc: Launch | None = None
        renewing: asyncio.Task[None] | None = None
        try:
            spec = await asyncio.to_thread(self._prepare, job_id)
            threads = str(orjson.loads(spec.read_bytes())["threads"])
            extra = {
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                "PYTHONUNBUFFERED": "1",
            }  # fmt: skip
            log_path = spec.parent / "worker.log"
            if self.settings.training_backend == "ray":
                proc = await RayLaunch.start(spec, extra, log_path, int(threads))
                await asyncio.to_thread(
                    self._note, job_id, f"The worker runs on the Ray cluster ({threads} CPUs)"
                )
            else:
                proc = await LocalLaunch.start(spec, extra, log_path)
            self.procs[job_id] = proc
            renewing = asyncio.create_task(self._renewing(job_id, proc))
            done: dict[str, Any] | None = None
            error = ""
            async for line in proc.lines():
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a library printed to stdout
                if not isinstance(event, dict):
                    continue
                if event.get("event") == "done":
                    done = event
                elif event.get("event") == "error":
                    error = str(event.get("message", ""))
                else:
                    try:
                        await asyncio.to_thread(self._record, job_id, event)
                    except Exception:  # noqa: BLE001 - one event lost, not the job
                        log.exception("storing an event of %s failed", job_id)
            code = await proc.wait()
            if done is not None and code == 0:
                if await asyncio.to_thread(self._succeed, job_id, done):
                    await self.platform.services["gateway"].reload()  # servable here at once
                    await asyncio.to_thread(outcome.validate, self.platform, job_id)
            else:
                if not error:  # the log is the operator's to read, not the caller's
                    log.warning("training worker of %s exited (%s): %s", job_id, code,
                                _tail(spec.parent / "worker.log"))  # fmt: skip
                await asyncio.to_thread(
                    self._fail, job_id, error or f"the training worker exited with code {code}"
                )
        except asyncio.CancelledError:
            if proc is not None:
                proc.terminate()
            raise
        except ConfigError as exc:  # the backend is not set up (Ray missing or unset)
            log.warning("fine-tuning job %s: %s", job_id, exc)
            await asyncio.to_thread(self._fail, job_id, str(exc))
        except Exception:  # noqa: BLE001 - the job fails, the runner goes on
            # the details are the operator's (the log), not the caller's (paths)
            log.exception("fine-tuning job %s failed", job_id)
            await asyncio.to_thread(self._fail, job_id, "the training worker failed")
        finally:
            if renewing is not None:
                renewing.cancel()
            if proc is not None and proc.running:
                proc.terminate()
            self.procs.pop(job_id, None)

    async def _renewing(self, job_id: str, proc: Launch) -> None:
        """The lease renewed every third of its length; the worker stopped when the job
        was cancelled (here or by another replica) or its lease was lost."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                keep = await asyncio.to_thread(self._renew, job_id)
            except Exception:  # noqa: BLE001 - a hiccup: try again at the next beat
                log.exception("renewing the lease of %s failed", job_id)
                continue
            if not keep:
                proc.terminate()
                return

    def _renew(self, job_id: str) -> bool:
        with self.platform.db.transaction() as s:
            took = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id, JobRow.worker == self.worker, JobRow.status == "running"
                )
                .values(lease_until=utcnow() + self.lease)
            )
            return bool(took.rowcount)  # type: ignore[attr-defined]  # a CursorResult

    def _ours(self, s: Any, job_id: str) -> JobRow | None:
        # held to the end of the transaction: a cancel committed meanwhile is seen here,
        # and one arriving later waits, so neither overwrites the other's status
        job = s.get(JobRow, job_id, with_for_update=True)
        if job is None or job.worker != self.worker or job.status != "running":
            return None  # cancelled, or taken over: what this worker says no longer counts
        return job  # type: ignore[no-any-return]  # a JobRow

    def _record(self, job_id: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        with self.platform.db.transaction() as s:
            job = self._ours(s, job_id)
            if job is None:
                return
            if kind == "metrics":
                step, total = int(event.get("step", 0)), int(event.get("total_steps", 0))
                job.step, job.total_steps = step, total
                job.trained_tokens = int(event.get("trained_tokens", job.trained_tokens))
                data: dict[str, Any] = {k: event[k] for k in METRICS if k in event}
                self._event(
                    s,
                    job_id,
                    f"Step {step}/{total}: training loss={event.get('train_loss')}",
                    kind="metrics",
                    data=data,
                )
            elif kind == "checkpoint":
                metrics = event.get("metrics") or {}
                s.add(
                    CheckpointRow(
                        id=new_id("ftckpt"), job_id=job_id, step=int(event.get("step", 0)),
                        metrics=metrics, path=str(event.get("path", "")),
                    )
                )  # fmt: skip
                self._event(s, job_id, f"Checkpoint created at step {event.get('step')}")
            elif kind == "message":
                self._event(s, job_id, str(event.get("message", ""))[:2000])

    def _succeed(self, job_id: str, done: dict[str, Any]) -> bool:
        """The job's model made servable in the job's own transaction: a llama.cpp
        provider (the adapter on the base GGUF), a route named as the model, and a
        version in the registry with its lineage (base model, training file, job)."""
        with self.platform.db.transaction() as s:
            job = self._ours(s, job_id)
            if job is None:
                return False
            if not done.get("gguf"):
                message = "the adapter could not be converted for llama.cpp"
                job.status, job.finished_at, job.lease_until = "failed", utcnow(), None
                job.error = {"code": "conversion_failed", "param": None, "message": message}
                self._event(s, job_id, message, level="error")
                return False
            short = job.id.partition("_")[2]
            name = f"{PREFIX}:{job.model}:{job.suffix or 'shipyard'}:{short}"
            metrics = dict(done.get("metrics") or {})
            job.fine_tuned_model = name
            job.result = {"adapter": done.get("adapter"), "gguf": done.get("gguf"),
                          "metrics": metrics}  # fmt: skip
            job.trained_tokens = int(done.get("trained_tokens") or job.trained_tokens)
            job.step = job.total_steps or job.step
            outcome.serve(self.platform, s, job, provider=f"ft-{short}")
            version = outcome.register(s, job)
            job.result = {**job.result, "registered": version}
            job.status, job.finished_at, job.lease_until = "succeeded", utcnow(), None
            self._event(s, job_id, f"New fine-tuned model created: {name}", data=metrics)
            self._event(s, job_id, f"Registered as model {version}")
            self._event(s, job_id, "The job has successfully completed")
            return True

    def _fail(self, job_id: str, message: str) -> None:
        with self.platform.db.transaction() as s:
            job = self._ours(s, job_id)
            if job is None:
                return
            job.status, job.finished_at, job.lease_until = "failed", utcnow(), None
            job.error = {"code": "training_failed", "param": None, "message": message[:1000]}
            self._event(s, job_id, f"Fine-tuning failed: {message[:1000]}", level="error")


def _audit(s: Any, actor: Actor, action: str, job_id: str) -> None:
    from shipyard.audit.service import Entry, record

    record(
        s,
        Entry(
            actor=actor.ref, actor_kind=actor.kind, action=action, outcome="success",
            status=200, workspace_id=actor.workspace_id, target=f"ftjob:{job_id}",
        ),
    )  # fmt: skip


def _tail(path: Path, size: int = 600) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""
