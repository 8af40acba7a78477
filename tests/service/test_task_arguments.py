"""A job's args are checked at enqueue against its function, naming the bad argument; a
type checker checks `enqueue` as it checks a call of the function."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mypy.api
import pytest

import taskyard
from taskyard.testing import TestRunner

app = taskyard.App("memory://")


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task()
def greet(ctx: taskyard.JobContext, who: str, *, punctuation: str = "!") -> str:
    return f"hello {who}{punctuation} (attempt {ctx.attempt})"


def test_an_enqueue_with_args_the_function_does_not_take_is_refused_naming_them() -> None:
    with TestRunner(app) as runner:
        with pytest.raises(taskyard.ValidationError) as refused:
            add.enqueue(a=1, c=2)  # type: ignore[call-arg]
        assert [(e.field, e.message) for e in refused.value.errors] == [
            ("args.c", "unknown argument (it takes 'a' and 'b')"),
            ("args.b", "required"),
        ]
        with pytest.raises(taskyard.ValidationError, match=r"args\.who: required"):
            app.enqueue(greet, args={})
        assert runner.jobs() == [], "a refused enqueue stores nothing"


def test_args_may_be_given_by_position_and_the_context_is_not_one() -> None:
    with TestRunner(app) as runner:
        sum_job = add.enqueue(2, b=3)
        greeting = greet.enqueue("ada", punctuation="?")
        assert sum_job.args == {"a": 2, "b": 3}
        assert greeting.args == {"who": "ada", "punctuation": "?"}
        runner.run_until_idle()
        assert runner.get(sum_job).result == 5
        assert runner.get(greeting).result == "hello ada? (attempt 1)"
        with pytest.raises(TypeError, match=r"add\.enqueue\(\) takes 2 positional"):
            add.enqueue(1, 2, 3)  # type: ignore[call-arg]


SNIPPET = """
import taskyard

app = taskyard.App("memory://")


@app.task(queue="emails")
def send_welcome(ctx: taskyard.JobContext, user_id: int, lang: str = "en") -> str:
    return lang


@app.task()
def add(a: int, b: int) -> int:
    return a + b


send_welcome.enqueue(user_id=1)
send_welcome.options(priority=5).enqueue(user_id=1, lang="fr")
add.enqueue(1, b=2)
reveal_type(send_welcome.enqueue)
send_welcome.enqueue(user=1)  # error: Unexpected keyword argument "user"
send_welcome.enqueue(user_id="1")  # error: has incompatible type "str"; expected "int"
send_welcome.options(delay_seconds=5).enqueue()  # error: Missing positional argument "user_id"
add.enqueue(a=1)  # error: Missing positional argument "b"
"""


def test_a_type_checker_checks_an_enqueue_as_a_call_of_the_function(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(textwrap.dedent(SNIPPET))
    out, err, status = mypy.api.run(
        [
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(source),
        ]
    )
    assert status == 1, err
    expected = {
        number: line.split("# error: ", 1)[1]
        for number, line in enumerate(SNIPPET.splitlines(), start=1)
        if "# error: " in line
    }
    found: dict[int, str] = {}
    for line in out.splitlines():
        _, number, kind, message = line.split(":", 3)
        if kind.strip() == "error":
            found[int(number)] = message
    assert sorted(found) == sorted(expected), out
    for number, words in expected.items():
        assert words in found[number], (number, found[number])
    assert "def (user_id: int, lang: str =) -> taskyard.domain.model.Job" in out
