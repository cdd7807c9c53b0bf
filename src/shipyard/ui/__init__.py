"""Server-rendered web UI (Jinja2 + HTMX, vendored assets, no JS build step)."""
