"""`taskyard simulate`: one seed, a sweep, and what a failing sweep prints."""

from __future__ import annotations

import pytest

from taskyard.entrypoints.cli import main
from taskyard.simulation import sweep as sweep_module
from taskyard.simulation.sweep import SeedOutcome


def test_one_seed_prints_its_summary_and_exits_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_COMMIT", "c0ffee")
    assert main(["simulate", "--seed", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "SEED=5 PROFILE=default COMMIT=c0ffee"
    assert out[-1] == "result     ok"
    assert any(line.startswith("invariants ") for line in out)
    assert not any("--- trace ---" in line for line in out)


def test_a_sweep_reports_its_rate_and_the_faults_it_fired(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_COMMIT", "c0ffee")
    assert main(["simulate", "--seeds", "1..12", "--profile", "chaos"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SEEDS=1..12 PROFILE=chaos COMMIT=c0ffee JOBS=1\n")
    assert "12 seeds, 0 failed" in out
    assert "seeds/s" in out
    assert "faults fired:" in out
    assert "crash" in out


def test_a_sweep_with_a_failing_seed_names_it_with_its_replay_and_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sweep_module.run_seed

    def run_seed(seed: int, profile: str) -> SeedOutcome:
        outcome = real(seed, profile)
        if seed == 3:
            return SeedOutcome(
                seed=seed,
                ok=False,
                broken=("no_job_lost",),
                digest=outcome.digest,
                faults=outcome.faults,
                exercised=outcome.exercised,
            )
        return outcome

    monkeypatch.setattr(sweep_module, "run_seed", run_seed)
    assert main(["simulate", "--seeds", "1..4"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed 3: no_job_lost" in out
    assert "4 seeds, 1 failed" in out
    assert "failed seed 3 (no_job_lost): taskyard simulate --seed 3 --trace" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--seeds", "9..2"],
        ["simulate", "--seeds", "abc"],
        ["simulate", "--seed", "1", "--profile", "nope"],
        ["simulate", "--seeds", "1..2", "--jobs", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("taskyard: ")
