# The two commands of the README.
.PHONY: up test bench

up:            ## set up and start Shipyard with its embedded defaults
	@scripts/setup.sh
	.venv/bin/shipyard up

test:          ## set up and run the whole test suite (SQLite, PostgreSQL, Redis, Chromium)
	@scripts/setup.sh --test
	.venv/bin/python -m pytest

bench:         ## startup benchmark (prints figures)
	@scripts/setup.sh
	.venv/bin/python bench/startup.py
