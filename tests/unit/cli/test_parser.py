"""`tidings` argument parsing, the `dev` delegation and the one-line errors."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest

from tidings import cli
from tidings.state import STATE_ENV


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def test_token_options_and_defaults() -> None:
    args = parse("token", "--user", "alice")
    assert (args.command, args.user, args.ttl, args.stack, args.region) == (
        "token",
        "alice",
        3600,
        None,
        None,
    )
    args = parse("token", "bob", "--ttl", "60", "--stack", "tidings-dev", "--region", "eu-west-1")
    assert (args.user_arg, args.ttl, args.stack, args.region) == ("bob", 60, "tidings-dev", "eu-west-1")


@pytest.mark.parametrize("ttl", ["0", "-5", "soon"])
def test_token_ttl_must_be_a_positive_whole_number(ttl: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("token", "--user", "alice", "--ttl", ttl)
    assert exited.value.code == 2
    assert "--ttl" in capsys.readouterr().err


def test_token_without_a_user_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["token"])
    assert exited.value.code == 2
    assert "needs a user" in capsys.readouterr().err


def test_submit_and_watch_options() -> None:
    args = parse("submit", "clip.mov", "--user", "carol", "--watch")
    assert (args.file, args.user, args.watch) == (Path("clip.mov"), "carol", True)
    args = parse("watch", "j-1", "--json", "--stack", "prod")
    assert (args.job_id, args.json, args.stack, args.user) == ("j-1", True, "prod", None)


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2


def test_dev_passes_every_option_through_to_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        received.append(argv)
        return 3

    fake = types.ModuleType("tidings.devtools.dev")
    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tidings.devtools.dev", fake)
    assert cli.main(["dev", "--ws-port", "0", "--help"]) == 3
    assert received == [["--ws-port", "0", "--help"]]


def test_no_local_stack_is_one_line_and_exit_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "missing.json"))
    for argv in (["token", "--user", "alice"], ["watch", "j-1"]):
        assert cli.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and "local stack is not running" in captured.err
        assert "Traceback" not in captured.err


def test_submit_of_a_missing_or_empty_file_is_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["submit", str(tmp_path / "nope.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert cli.main(["submit", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err


def test_the_default_user_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "dana")
    assert cli._default_user() == "dana"


def test_token_ttl_is_capped_at_24_hours(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: `--ttl` allowed 10 years; tokens now live at most 24 h."""
    assert parse("token", "--user", "alice", "--ttl", "86400").ttl == 86400
    with pytest.raises(SystemExit) as caught:
        parse("token", "--user", "alice", "--ttl", str(10 * 365 * 24 * 3600))
    assert caught.value.code == 2
    assert "at most 86400" in capsys.readouterr().err
