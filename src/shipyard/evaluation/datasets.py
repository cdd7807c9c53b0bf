"""Versioned datasets: items `{inputs, expected, metadata}`, a new version on every
change, every older version readable as it was (see `tables`: an item's row spans the
versions it belongs to).

A change (`change`) adds, updates and removes items in one step; it is a
compare-and-set on the dataset's `latest`, so two concurrent changes never both become
version N (the second is refused with 409, or re-based when no base version was given).
Items come from the API, from uploads (`shipyard.evaluation.uploads`) or from traces
(`from_traces`: the trace's input, the correction people gave it or its output, its
thumbs, and a link to it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.evaluation.schemas import MAX_CHANGE, ItemUpdate
from shipyard.evaluation.schemas import NAME as NAME  # re-exported: datasets.NAME
from shipyard.evaluation.schemas import ItemIn as ItemIn
from shipyard.evaluation.tables import DatasetItemRow, DatasetRow, DatasetVersionRow
from shipyard.feedback import store as feedback_store
from shipyard.store import new_id, utcnow


@dataclass(frozen=True, slots=True)
class Change:
    add: Sequence[ItemIn] = ()
    update: Sequence[ItemUpdate] = ()
    remove: Sequence[str] = ()
    # fields an update set explicitly (so `expected: null` clears it)
    update_fields: Sequence[frozenset[str]] = ()

    @property
    def size(self) -> int:
        return len(self.add) + len(self.update) + len(self.remove)


# Datasets --------------------------------------------------------------------------------


def get(s: Session, workspace_id: str, name: str) -> DatasetRow:
    row = s.scalars(
        select(DatasetRow).where(DatasetRow.workspace_id == workspace_id, DatasetRow.name == name)
    ).first()
    if row is None:
        raise NotFound(f"no dataset '{name[:128]}' in this workspace")
    return row


def create(
    s: Session, *, workspace_id: str, name: str, description: str, author: str
) -> DatasetRow:
    existing = s.scalars(
        select(DatasetRow.id).where(
            DatasetRow.workspace_id == workspace_id, DatasetRow.name == name
        )
    ).first()
    if existing is not None:
        raise Conflict(f"dataset '{name}' already exists", param="name")
    row = DatasetRow(
        id=new_id("ds"),
        workspace_id=workspace_id,
        name=name,
        description=description,
        latest=0,
        created_by=author,
    )
    s.add(row)
    s.flush()
    return row


def listing(s: Session, workspace_id: str) -> list[DatasetRow]:
    q = select(DatasetRow).where(DatasetRow.workspace_id == workspace_id).order_by(DatasetRow.name)
    return list(s.scalars(q))


def counted(s: Session, workspace_id: str) -> list[tuple[DatasetRow, int]]:
    """The workspace's datasets with their latest version's item count, in one query."""
    latest = (DatasetVersionRow.dataset_id == DatasetRow.id) & (
        DatasetVersionRow.number == DatasetRow.latest
    )
    q = (
        select(DatasetRow, DatasetVersionRow.item_count)
        .outerjoin(DatasetVersionRow, latest)
        .where(DatasetRow.workspace_id == workspace_id)
        .order_by(DatasetRow.name)
    )
    return [(row, count or 0) for row, count in s.execute(q)]


def version(s: Session, ds: DatasetRow, number: int | None) -> DatasetVersionRow:
    """A version of the dataset (None: the latest). NotFound before the first."""
    n = ds.latest if number is None else number
    row = s.scalars(
        select(DatasetVersionRow).where(
            DatasetVersionRow.dataset_id == ds.id, DatasetVersionRow.number == n
        )
    ).first()
    if row is None:
        raise NotFound(
            f"dataset '{ds.name}' has no version {n}"
            + (" yet: add items first" if ds.latest == 0 else f" (latest: {ds.latest})"),
            param="version",
        )
    return row


def versions(s: Session, ds: DatasetRow) -> list[DatasetVersionRow]:
    q = (
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset_id == ds.id)
        .order_by(DatasetVersionRow.number.desc())
    )
    return list(s.scalars(q))


def _at(number: int) -> Any:
    return (
        DatasetItemRow.from_version <= number,
        or_(DatasetItemRow.to_version.is_(None), DatasetItemRow.to_version > number),
    )


def items(
    s: Session, ds: DatasetRow, number: int, *, after: int = -1, limit: int | None = None
) -> list[DatasetItemRow]:
    """The items of version `number`, in the order they were first added."""
    q = (
        select(DatasetItemRow)
        .where(DatasetItemRow.dataset_id == ds.id, DatasetItemRow.position > after, *_at(number))
        .order_by(DatasetItemRow.position)
    )
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


def change(
    s: Session,
    ds: DatasetRow,
    delta: Change,
    *,
    author: str,
    message: str = "",
    source: str = "api",
    base_version: int | None = None,
) -> DatasetVersionRow:
    """Write `delta` as the dataset's next version; all of it or none (it runs in the
    caller's transaction, which rolls back on any error raised here)."""
    if delta.size == 0:
        raise InvalidInput("the change is empty: give items to add, update or remove")
    if delta.size > MAX_CHANGE:
        raise InvalidInput(f"at most {MAX_CHANGE} items change in one version", param="add")
    if base_version is not None and base_version != ds.latest:
        raise Conflict(
            f"version {base_version} is not the latest ({ds.latest}): reload and retry",
            param="base_version",
        )
    old = ds.latest
    new = old + 1
    # compare-and-set: only one change moves latest from `old` to `new`
    moved = s.execute(
        update(DatasetRow)
        .where(DatasetRow.id == ds.id, DatasetRow.latest == old)
        .values(latest=new, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
        raise Conflict("the dataset changed meanwhile: retry", param="base_version")
    ds.latest = new

    current: dict[str, DatasetItemRow] = {}
    keys = [u.id for u in delta.update] + list(delta.remove)
    if keys:
        if len(set(keys)) != len(keys):
            raise InvalidInput("an item is updated or removed twice in one change", param="remove")
        for chunk in _chunks(keys, 500):
            q = select(DatasetItemRow).where(
                DatasetItemRow.dataset_id == ds.id, DatasetItemRow.key.in_(chunk), *_at(old)
            )
            current.update({r.key: r for r in s.scalars(q)})
        missing = [k for k in keys if k not in current]
        if missing:
            raise NotFound(
                f"no item {missing[0][:32]!r} in version {old} of '{ds.name}'", param="update"
            )
    position = (
        s.scalar(
            select(func.max(DatasetItemRow.position)).where(DatasetItemRow.dataset_id == ds.id)
        )
        or 0
    )
    for key in delta.remove:
        current[key].to_version = new
    fields = list(delta.update_fields) or [frozenset(u.model_fields_set) for u in delta.update]
    for upd, given in zip(delta.update, fields, strict=True):
        before = current[upd.id]
        before.to_version = new
        replaced = DatasetItemRow(
            id=new_id("dsi"),
            dataset_id=ds.id,
            key=before.key,
            position=before.position,
            from_version=new,
            to_version=None,
            inputs=upd.inputs if "inputs" in given and upd.inputs is not None else before.inputs,
            expected=upd.expected if "expected" in given else before.expected,
            metadata_=upd.metadata
            if "metadata" in given and upd.metadata is not None
            else before.metadata_,
            source_trace_id=before.source_trace_id,
        )
        s.add(replaced)
    for item in delta.add:
        position += 1
        s.add(
            DatasetItemRow(
                id=new_id("dsi"),
                dataset_id=ds.id,
                key=new_id("it"),
                position=position,
                from_version=new,
                to_version=None,
                inputs=item.inputs,
                expected=item.expected,
                metadata_=dict(item.metadata),
                source_trace_id=item.source_trace_id,
            )
        )
    s.flush()
    count = s.scalar(
        select(func.count())
        .select_from(DatasetItemRow)
        .where(DatasetItemRow.dataset_id == ds.id, *_at(new))
    )
    row = DatasetVersionRow(
        id=new_id("dsv"),
        dataset_id=ds.id,
        number=new,
        message=message,
        author=author,
        source=source,
        item_count=int(count or 0),
        added=len(delta.add),
        updated=len(delta.update),
        removed=len(delta.remove),
    )
    s.add(row)
    s.flush()
    return row


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


# From traces -----------------------------------------------------------------------------


def inputs_of(text: str) -> dict[str, Any]:
    """A trace's input as dataset inputs: the chat messages a gateway call was given, or
    the text under `input`."""
    if text.startswith("["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(m, dict) for m in value):
            return {"messages": value}
    return {"input": text}


def from_traces(
    s: Session,
    trace_store: Any,
    *,
    workspace_id: str,
    trace_ids: Sequence[str],
    use_corrections: bool = True,
) -> list[ItemIn]:
    """One item per trace: inputs from its first model call (else its root), `expected`
    the latest correction people gave it (else its output, unless it got more thumbs
    down than up), and in `metadata` its route, model, output and net thumbs; what a
    correction or thumbs down rejected is kept as `metadata.rejected` (DPO pairs)."""
    feedback: dict[str, list[Any]] = {}
    for fb in feedback_store.for_traces(s, workspace_id=workspace_id, trace_ids=list(trace_ids)):
        feedback.setdefault(fb.trace_id, []).append(fb)
    out: list[ItemIn] = []
    for n, trace_id in enumerate(trace_ids):
        summary = trace_store.trace(workspace_id, trace_id)
        if summary is None:
            raise NotFound(
                f"trace_ids.{n}: no trace {trace_id} in this workspace", param="trace_ids"
            )
        text_in, text_out = summary.input, summary.output
        page = trace_store.trace_spans(workspace_id, trace_id, cursor=None, limit=200)
        for span in page.items:
            if span.operation in {"chat", "llm", "text_completion"} and span.input:
                text_in, text_out = span.input, span.output
                break
        pieces = feedback.get(trace_id, [])
        thumbs = sum(fb.thumbs or 0 for fb in pieces)
        correction = None
        if use_corrections:
            for fb in pieces:
                if fb.correction is not None:
                    correction = fb.correction  # oldest first: the latest wins
        metadata: dict[str, Any] = {"route": summary.route, "model": summary.model}
        metadata["output"] = text_out
        if thumbs:
            metadata["thumbs"] = thumbs
        if correction is not None:
            expected: Any = correction
            if correction != text_out:
                metadata["rejected"] = text_out
        elif thumbs < 0:
            expected = None
            metadata["rejected"] = text_out
        else:
            expected = text_out
        out.append(
            ItemIn(
                inputs=inputs_of(text_in),
                expected=expected,
                metadata=metadata,
                source_trace_id=trace_id,
            )
        )
    return out
