"""`taskyard migrate` resolves its store URL like every other command: `--db` (or the older
`--database-url`), then `TASKYARD_DATABASE_URL`, then `database_url` in `taskyard.toml`."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskyard.adapters.sqlshared import load_migrations
from tests.cli.conftest import RunCli

SOURCES = ("flag", "alias", "environment", "file")


def _migrated(name: str) -> str:
    """What `taskyard migrate` prints for `sqlite:///<name>.db`: the store, then its schema."""
    version = load_migrations("sqlite")[-1].version
    return (
        f"taskyard migrate sqlite:///{name}.db\n{name}.db: taskyard schema at version {version}\n"
    )


def _give(source: str, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Put `sqlite:///<name>.db` in `source`; the arguments that go with it."""
    url = f"sqlite:///{name}.db"
    if source == "flag":
        return ["--db", url]
    if source == "alias":
        return ["--database-url", url]
    if source == "environment":
        monkeypatch.setenv("TASKYARD_DATABASE_URL", url)
        return []
    assert source == "file"
    (tmp_path / "taskyard.toml").write_text(f'database_url = "{url}"\n')
    return []


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_alone_names_the_store_to_migrate(
    source: str, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = run_cli("migrate", *_give(source, source, monkeypatch, tmp_path))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == _migrated(source)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [f"{source}.db"]


@pytest.mark.parametrize(
    ("given", "winner"),
    [
        (("flag", "environment", "file"), "flag"),
        (("alias", "environment", "file"), "alias"),
        (("environment", "file"), "environment"),
    ],
)
def test_a_flag_wins_over_the_environment_which_wins_over_the_file(
    given: tuple[str, ...],
    winner: str,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    argv = [arg for source in given for arg in _give(source, source, monkeypatch, tmp_path)]
    ran = run_cli("migrate", *argv)
    assert (ran.code, ran.out) == (0, _migrated(winner))
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [f"{winner}.db"]


def test_a_settings_file_named_by_config_is_read(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.toml").write_text('database_url = "sqlite:///named.db"\n')
    ran = run_cli("migrate", "--config", "elsewhere.toml")
    assert (ran.code, ran.out) == (0, _migrated("named"))


def test_a_bad_url_is_blamed_on_where_it_was_written(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "taskyard.toml").write_text('database_url = "bogus://x"\n')
    ran = run_cli("migrate")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err_lines == [
        f"taskyard: database_url in {tmp_path / 'taskyard.toml'}: unsupported scheme 'bogus' "
        "(use postgresql://, sqlite:///, memory://)"
    ]
    ran = run_cli("migrate", "--database-url", "sqlite://host/x.db")
    assert ran.code == 2
    assert ran.err_lines[0].startswith("taskyard: --database-url: 'sqlite://host/x.db': ")
    ran = run_cli("migrate", "--db", "sqlite:///a.db", "--database-url", "sqlite:///b.db")
    assert (ran.code, ran.err_lines) == (
        2,
        ["taskyard: --database-url: the same setting as --db: give only one"],
    )
    (tmp_path / "taskyard.toml").unlink()
    ran = run_cli("migrate")
    assert ran.code == 2
    assert ran.err_lines[0].startswith("taskyard: TASKYARD_DATABASE_URL: not set (use --db ")
    assert list(tmp_path.glob("*.db")) == []
