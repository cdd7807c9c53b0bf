"""SDK overhead: microseconds a `@shipyard.trace` call costs over the same call undecorated.

The real setup: `shipyard.init(url, key)` (global TracerProvider, BatchSpanProcessor,
OTLP protobuf over HTTP) exporting to a receiver on loopback that runs in its own process
(it decodes each request and counts the spans, so dropped spans would show).

Two figures, in CPU time so that the 2 cores others share do not blur them: the calling
thread's (`time.thread_time`: what the caller pays per call, the span and its captured
inputs and outputs) and the whole process's over each burst of calls and the flush of what
it queued (`time.process_time`: the export thread's protobuf encoding and HTTP too), both
next to a bare OpenTelemetry span around the same call (the floor), and the ratio of the
two. The three run interleaved, one burst each in turn, so that load from other processes
falls on all three alike; the best burst of each is the figure (the median is printed too).

Run: .venv/bin/python bench/sdk_overhead.py [bursts]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WARMUP = 4
BURST = 256
PROMPT = "Summarise the lighthouse keeper's day in three sentences, plain words only. " * 2


def receiver() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            count[0] += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            self._reply(b"")

        def do_GET(self) -> None:
            self._reply(json.dumps(count[0]).encode())

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def answer(prompt: str, temperature: float = 0.2) -> dict[str, object]:
    return {"text": prompt[:40], "tokens": len(prompt) // 4, "temperature": temperature}


def burst(fn: Callable[..., object], flush: Callable[[], bool]) -> tuple[float, float]:
    """Microseconds per call over one burst of BURST calls: the calling thread's CPU, and
    the process's CPU through the flush after it (the export catches up: the shape of a
    request handler, not of a loop that outruns the exporter for seconds)."""
    p0, t0 = time.process_time(), time.thread_time()
    for _ in range(BURST):
        fn(PROMPT, temperature=0.7)
    thread = time.thread_time() - t0
    assert flush()
    process = time.process_time() - p0
    return thread / BURST * 1e6, process / BURST * 1e6


def main() -> None:
    bursts = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    proc = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{proc.stdout.readline().strip()}"
        from opentelemetry import trace as trace_api

        import shipyard

        shipyard.init(url, "sk-bench", service_name="sdk-overhead")
        traced = shipyard.trace(answer)
        tracer = trace_api.get_tracer("bench")

        def bare(prompt: str, temperature: float = 0.2) -> dict[str, object]:
            # The floor: what the SDK itself costs for an empty span around the call.
            with tracer.start_as_current_span("answer"):
                return answer(prompt, temperature)

        variants: dict[str, tuple[Callable[..., object], Callable[[], bool]]] = {
            "plain": (answer, lambda: True),
            "bare": (bare, shipyard.flush),
            "traced": (traced, shipyard.flush),
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for round in range(WARMUP + bursts):
            for label, (fn, flush) in variants.items():
                figures = burst(fn, flush)
                if round >= WARMUP:
                    results[label].append(figures)
        shipyard.shutdown()
        with urllib.request.urlopen(url) as reply:
            received = json.loads(reply.read())
        expected = 2 * (WARMUP + bursts) * BURST
        report(results, bursts)
        print(f"spans received by the receiver: {received} of {expected}")
    finally:
        proc.terminate()
        proc.wait()


def report(results: dict[str, list[tuple[float, float]]], bursts: int) -> None:
    """Overhead = a variant's CPU per call minus the undecorated call's, per statistic."""
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    for pick in ("best", "median"):
        choose = min if pick == "best" else statistics.median
        plain = tuple(choose(figures[i] for figures in results["plain"]) for i in (0, 1))
        stats[pick] = {
            label: (
                choose(f[0] for f in results[label]) - plain[0],
                choose(f[1] for f in results[label]) - plain[1],
            )
            for label in ("bare", "traced")
        }
    plain_best = min(t for t, _ in results["plain"])
    print(f"undecorated call: {plain_best:.2f} us; {bursts} bursts of {BURST} calls each")
    print("overhead per span (us)       calling thread's CPU     process CPU (with export)")
    print("                                best     median           best     median")
    for label, name in (("bare", "bare OpenTelemetry span"), ("traced", "@shipyard.trace")):
        (t, p), (tm, pm) = stats["best"][label], stats["median"][label]
        print(f"{name:26} {t:9.1f} {tm:10.1f} {p:14.1f} {pm:10.1f}")
    ratio = {k: [stats[k]["traced"][i] / stats[k]["bare"][i] for i in (0, 1)] for k in stats}
    print(
        f"{'ratio to the bare span':26} {ratio['best'][0]:8.2f}x {ratio['median'][0]:9.2f}x"
        f" {ratio['best'][1]:13.2f}x {ratio['median'][1]:9.2f}x"
    )


if __name__ == "__main__":
    receiver() if sys.argv[1:] == ["--receiver"] else main()
