"""Tracing: OTLP ingest, the trace store, queries, metrics, drift and alerts."""
