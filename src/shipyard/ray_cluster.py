"""Ray, for what scales out past one machine: fine-tuning jobs (`training_backend: ray`)
and served models (`engine: ray` on a llama_cpp provider, Ray Serve). One connection
per process, made on first use from `ray_address` (settings): an address of a running
cluster (`127.0.0.1:6379`, `ray://head:10001`), or `local` to start a Ray instance on
this machine. `ray` is an optional dependency (the `ray` extra); nothing imports it
until a job or a deployment asks for it.

What runs on the cluster reads the same paths as this server (training folders, model
files): on one machine that holds; across machines, mount Shipyard's home and the
models at the same paths on every node.
"""

from __future__ import annotations

import threading

from shipyard.errors import ConfigError

_lock = threading.Lock()
_address = ""


def configure(address: str) -> None:
    """Where Ray is (settings: `ray_address`); process-wide, like the connection."""
    global _address
    _address = address


def connect() -> None:
    """Connect this process to Ray (blocking: call it off the event loop)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'shipyard[ray]'") from None
    if ray.is_initialized():
        return
    with _lock:
        if ray.is_initialized():
            return
        if not _address:
            raise ConfigError("ray_address is not set (an address, or 'local')")
        local = _address == "local"
        ray.init(
            address=None if local else _address,
            namespace="shipyard",
            log_to_driver=False,
            configure_logging=False,
            include_dashboard=False if local else None,
            ignore_reinit_error=True,
        )


def serve_started() -> None:
    """Ray Serve's controller, without its HTTP proxy: Shipyard calls deployments
    through their handles (and its own port stays its own)."""
    from ray import serve

    connect()
    serve.start(proxy_location="Disabled")
