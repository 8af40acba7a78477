"""The seed sweep: 500 worlds under the default profile, and a few hundred more under the
harsher ones. A failure names each seed and the command that replays it."""

from __future__ import annotations

import os

import pytest

from taskyard.simulation.faults import FaultKind
from taskyard.simulation.run import replay_command
from taskyard.simulation.sweep import SeedOutcome, Tally, sweep

JOBS = min(2, os.cpu_count() or 1)


def _failures(outcomes: list[SeedOutcome], profile: str) -> str:
    return "\n".join(
        f"seed {o.seed}: {', '.join(o.broken)} -> {replay_command(o.seed, profile)}"
        for o in outcomes
        if not o.ok
    )


def test_500_seeds_of_the_default_profile_keep_every_guarantee() -> None:
    outcomes = sweep(list(range(1, 501)), "default", jobs=JOBS)
    assert len(outcomes) == 500
    assert all(o.ok for o in outcomes), _failures(outcomes, "default")

    faults = Tally.of(o.faults for o in outcomes)
    silent = [kind.value for kind in FaultKind if not faults.total.get(kind.value)]
    assert not silent, f"fault kinds that never fired: {silent}"
    exercised = Tally.of(o.exercised for o in outcomes)
    for path in (
        "expire",  # a lease was reaped
        "release",  # a lease was handed back at shutdown
        "report_stale",  # a paused or cut-off worker's late report was refused
        "report_already_applied",  # an ambiguous report was retried
        "heartbeat_refused",
        "checkpoint_refused",
        "timed_out",
        "dependency_failed",
        "split_brain_lead",
        "late_request",  # a request its caller gave up on landed later
        "lingering",  # a fault outlived the heal (liveness must hold regardless)
        "report_batch_apart",  # a refused batch was sent again report by report
        "report_replaced",  # a refused report became a failed attempt
        "report_abandoned",  # ... and when that was refused too, the lease was let lapse
        "release_refused",  # a refused hand-back left that lease to lapse
        "report_stale_unreaped",  # a report between lease expiry and the reaper
        "release_cancelled",  # a hand-back of a job whose cancellation was requested
        "scheduler_resigned",  # a leader stopped on purpose and gave its lease up
        "unknown_task",  # a worker found the task of a job it claimed gone
        "malformed_refused",  # a client's malformed submission was refused
        "listing_walked",  # a person listed jobs page by page
        "bulk_cancel",
        "bulk_retry",
        "cancel_in_deploy",
        "hook_job_dead",  # the hooks heard a job die
        "hook_lease_lost",  # ... an attempt end with its lease lost
        "hook_handed_back",  # ... and one handed back at a graceful stop
        "waited_concurrency_limit",  # a queue's limit held a due job back
        "waited_key_concurrency_limit",  # ... its key's limit
        "waited_rate_limit",  # ... a rate window
    ):
        assert exercised.total.get(path, 0) > 0, f"no seed reached {path}"
    assert len({o.digest for o in outcomes}) == 500, "every seed makes a different world"


@pytest.mark.parametrize(("profile", "count"), [("chaos", 120), ("clocks", 60), ("calm", 30)])
def test_other_profiles_keep_every_guarantee(profile: str, count: int) -> None:
    outcomes = sweep(list(range(1, count + 1)), profile, jobs=JOBS)
    assert all(o.ok for o in outcomes), _failures(outcomes, profile)
