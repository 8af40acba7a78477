# The commands CI runs (.ci/run), one target each.
.PHONY: install test lint fmt ci sim sim-coverage chaos docs

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

# The domain's lines the simulator alone runs (tests/simulation/test_coverage.py: >= 95 %).
sim-coverage:
	coverage run --source=taskyard/domain -m taskyard.entrypoints.cli simulate --seeds 1..100
	coverage report

chaos:
	TASKYARD_CHAOS_JOBS=10000 pytest tests/chaos -s

docs:
	python -m taskyard.entrypoints.diagram > docs/state-machine.md

ci:
	bash .ci/run
