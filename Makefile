# The commands CI runs (.ci/run), one target each.
.PHONY: install test lint fmt ci sim chaos docs

install:
	pip install -e '.[dev]'

test:
	pytest

lint:
	ruff check .
	ruff format --check .
	mypy --strict taskyard
	lint-imports

fmt:
	ruff format .
	ruff check --fix .

sim:
	taskyard simulate --seeds 1..500 --jobs 2

chaos:
	TASKYARD_CHAOS_JOBS=10000 pytest tests/chaos -s

docs:
	python -m taskyard.entrypoints.diagram > docs/state-machine.md

ci:
	bash .ci/run
