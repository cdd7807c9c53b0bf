# The two commands of the README.
.PHONY: up test bench

up:            ## set up and start Shipyard with its embedded defaults
	@scripts/setup.sh
	.venv/bin/shipyard up

test:          ## set up, lint, type-check and run the whole test suite (SQLite, PostgreSQL, Redis, Chromium)
	@scripts/setup.sh --test
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/python -m pytest

bench:         ## startup and gateway benchmarks, side by side with LiteLLM (prints figures)
	@scripts/setup.sh --test
	.venv/bin/python bench/startup.py
	.venv/bin/python bench/gateway.py
