"""runtimes.py: which interpreter and which packages a function gets, decided from values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.local.runtimes import (
    RUNTIME_SDK,
    Interpreter,
    RuntimeSetupError,
    choose_interpreter,
    deprecation_warnings,
    environment_key,
    missing_wheel,
    parse_runtime,
    pip_failure,
    requirement_lines,
    requirement_set,
)

PY311 = Interpreter((3, 11), Path("/py/3.11/bin/python3.11"), "3.11.7")
PY312 = Interpreter((3, 12), Path("/py/3.12/bin/python3.12"), "3.12.1")
PY313 = Interpreter((3, 13), Path("/py/3.13/bin/python3.13"), "3.13.0")


def test_declared_version_is_used_when_present() -> None:
    choice = choose_interpreter("python3.12", [PY311, PY312, PY313])
    assert choice.interpreter == PY312 and choice.warning is None


def test_nearest_version_with_one_line_warning_otherwise() -> None:
    choice = choose_interpreter("python3.12", [PY311, PY313])
    assert choice.interpreter == PY313  # a tie goes to the newer
    assert choice.warning is not None and "\n" not in choice.warning
    assert "python3.12" in choice.warning and "3.13.0" in choice.warning
    assert choose_interpreter("python3.14", [PY311, PY312]).interpreter == PY312


def test_no_interpreter_is_a_clear_error() -> None:
    with pytest.raises(RuntimeSetupError, match=r"python3\.12"):
        choose_interpreter("python3.12", [])
    with pytest.raises(ValueError, match=r"nodejs20\.x"):
        parse_runtime("nodejs20.x")


def test_requirement_lines_skip_comments_and_blanks() -> None:
    text = "# layer deps\n\npydantic>=2.7  # models\nPyJWT>=2.9\n"
    assert requirement_lines(text) == ["pydantic>=2.7", "PyJWT>=2.9"]


def test_requirement_set_adds_the_runtime_sdk_unless_the_function_ships_its_own() -> None:
    with_sdk = requirement_set(["pynamodb>=6.0"], ["PyJWT>=2.9"], "python3.12")
    assert set(with_sdk) == {"pynamodb>=6.0", "PyJWT>=2.9", *RUNTIME_SDK["python3.12"]}
    own = requirement_set(["boto3==1.40.0"], [], "python3.12")
    assert own == ("boto3==1.40.0",)
    # the same packages in another order are one environment (one pip run)
    assert requirement_set(["b", "a"], ["c"], "python3.12") == requirement_set(
        ["c", "a"], ["b"], "python3.12"
    )


def test_environment_key_depends_on_requirements_and_interpreter() -> None:
    first = environment_key(("a", "b"), (3, 12))
    assert first == environment_key(("a", "b"), (3, 12))
    assert first != environment_key(("a", "b"), (3, 13))
    assert first != environment_key(("a", "c"), (3, 12))


def test_missing_wheel_is_read_from_pip_output() -> None:
    output = (
        "ERROR: Could not find a version that satisfies ...\n"
        "ERROR: No matching distribution found for psycopg2==2.9.9\n"
    )
    assert missing_wheel(output) == "psycopg2==2.9.9"
    assert missing_wheel("Successfully downloaded x") is None


def test_deprecated_runtimes_are_named_once_each_with_their_functions() -> None:
    warnings = deprecation_warnings(
        {"Connect": "python3.8", "Send": "python3.12", "Chat": "nodejs18.x", "Leave": "python3.8"}
    )
    assert warnings == [
        "warning: python3.8 (Connect, Leave) is a deprecated Lambda runtime since 2024-10-14: Lambda "
        "blocks creating, then updating, functions on it, so this template may not deploy; move to a "
        "supported runtime",
        "warning: nodejs18.x (Chat) is a deprecated Lambda runtime since 2025-09-01: Lambda blocks "
        "creating, then updating, functions on it, so this template may not deploy; move to a "
        "supported runtime",
    ]
    assert deprecation_warnings({"Send": "python3.12", "Chat": "nodejs22.x"}) == []


def test_python38_gets_an_sdk_pin_that_installs_on_it() -> None:
    # boto3 1.38 and later require Python 3.9: the default pin would stop the start on 3.8
    assert requirement_set([], [], "python3.8") == ("boto3==1.37.38", "botocore==1.37.38")


def test_a_pip_failure_is_one_short_line_with_the_error_that_matters() -> None:
    ignored = "ERROR: Ignored the following versions that require a different python version: " + "; ".join(
        f"1.40.{n} Requires-Python >=3.9" for n in range(300)
    )
    output = [
        "Looking in indexes: https://pypi.org/simple",
        ignored,
        "ERROR: Could not find a version that satisfies the requirement boto3==1.40.0 (from versions: "
        + ", ".join(f"1.9.{n}" for n in range(300))
        + ")",
        "ERROR: No matching distribution found for boto3==1.40.0",
    ]
    line = pip_failure(output)
    assert "Ignored the following" not in line
    assert line.endswith("ERROR: No matching distribution found for boto3==1.40.0")
    assert line.startswith("ERROR: Could not find a version that satisfies the requirement boto3==1.40.0")
    assert len(line) < 600 and "\n" not in line
    # no ERROR line: the last lines say what happened
    assert pip_failure(["Collecting x", "", "Killed"]) == "Collecting x | Killed"
