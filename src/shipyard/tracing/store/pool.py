"""A small pool of reader connections: a thread takes an idle one (or opens one) and
gives it back; at most `idle` are kept. One connection is never used by two threads at
once. Closing the pool closes the idle ones, and each busy one as it comes back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class Pool(Generic[C]):
    def __init__(
        self,
        connect: Callable[[], C],
        *,
        idle: int = 8,
        healthy: Callable[[C], bool] = lambda conn: True,
    ) -> None:
        self._connect = connect
        self._healthy = healthy
        self._most = idle
        self._idle: list[C] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[C]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the trace store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            keep = self._healthy(conn)
            with self._lock:
                if keep and not self._closed and len(self._idle) < self._most:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
