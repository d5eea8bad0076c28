"""`tidings dev --config-env ENV` and `--env-vars FILE`, read as the SAM CLI reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidings.local import samconfig
from tidings.local.model import Function
from tidings.local.stack import parse_args

ROOT = Path(__file__).resolve().parents[3]


def _function(logical_id: str, name: str, environment: dict[str, str]) -> Function:
    return Function(
        logical_id=logical_id,
        name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        code_dir=Path("."),
        handler="app.handler",
        runtime="python3.12",
        timeout_s=3,
        memory_mb=128,
        environment=environment,
    )


def test_config_env_reads_the_deploy_parameter_overrides_of_the_projects_samconfig() -> None:
    text = (ROOT / "samconfig.toml").read_text()
    assert samconfig.config_env_parameter_overrides(text, "dev") == {
        "StageName": "dev",
        "LogLevel": "DEBUG",
        "LogRetentionDays": "7",
    }
    assert samconfig.config_env_parameter_overrides(text, "prod")["TokenSecretName"] == (
        "tidings/prod/token-signing-key"
    )


def test_parameter_overrides_as_a_list_or_under_global_and_quoted_spaces() -> None:
    text = """
[a.deploy.parameters]
parameter_overrides = ["Stage=a", 'Title="two words"']
[b.global.parameters]
parameter_overrides = "Stage=b"
[c.deploy.parameters]
region = "eu-west-1"
"""
    assert samconfig.config_env_parameter_overrides(text, "a") == {"Stage": "a", "Title": "two words"}
    assert samconfig.config_env_parameter_overrides(text, "b") == {"Stage": "b"}
    assert samconfig.config_env_parameter_overrides(text, "c") == {}
    with pytest.raises(samconfig.ConfigError, match=r"no environment 'z' \(it has: a, b, c\)"):
        samconfig.config_env_parameter_overrides(text, "z")
    with pytest.raises(samconfig.ConfigError, match="Key=Value"):
        samconfig.parse_parameter_overrides("NoEquals")


def test_env_vars_apply_parameters_to_all_then_the_functions_own_and_only_declared_names() -> None:
    env_vars = samconfig.parse_env_vars(
        json.dumps(
            {
                "Parameters": {"LEVEL": "DEBUG", "TABLE": "shared", "UNDECLARED": "x"},
                "Notify": {"TABLE": "mine", "RETRIES": 3, "ON": True},
            }
        )
    )
    notify = _function(
        "Notify", "stack-Notify-abc", {"LEVEL": "INFO", "TABLE": "t", "RETRIES": "1", "ON": ""}
    )
    other = _function("Other", "stack-Other-abc", {"TABLE": "t"})
    assert samconfig.function_environment(notify, env_vars) == {
        "LEVEL": "DEBUG",
        "TABLE": "mine",
        "RETRIES": "3",
        "ON": "true",
    }
    assert samconfig.function_environment(other, env_vars) == {"TABLE": "shared"}
    by_name = samconfig.parse_env_vars('{"stack-Other-abc": {"TABLE": "by-name"}}')
    assert samconfig.function_environment(other, by_name) == {"TABLE": "by-name"}


def test_env_vars_that_are_not_sams_shape_are_refused_in_one_line() -> None:
    for text, message in (("[1]", "Parameters"), ("{", "not JSON"), ('{"Parameters": 3}', "Parameters")):
        with pytest.raises(samconfig.ConfigError, match=message):
            samconfig.parse_env_vars(text)


def test_dev_options_take_config_env_env_vars_and_command_line_overrides_win(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n")
    (tmp_path / "samconfig.toml").write_text(
        '[dev.deploy.parameters]\nparameter_overrides = "StageName=dev LogLevel=DEBUG"\n'
    )
    env_file = tmp_path / "env.json"
    env_file.write_text('{"Parameters": {"LOG": "1"}}')
    options = parse_args(
        [
            "--template",
            str(template),
            "--config-env",
            "dev",
            "--env-vars",
            str(env_file),
            "--parameter-overrides",
            "LogLevel=INFO",
        ]
    )
    assert options.parameter_overrides == {"StageName": "dev", "LogLevel": "INFO"}
    assert options.env_vars == {"Parameters": {"LOG": "1"}}


def test_an_unknown_config_env_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "samconfig.toml").write_text("[dev.deploy.parameters]\n")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--template", str(tmp_path / "template.yaml"), "--config-env", "qa"])
    assert exit_info.value.code == 2
    assert "no environment 'qa' (it has: dev)" in capsys.readouterr().err


def test_dev_help_lists_the_sam_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--config-env ENV" in out
    assert "--env-vars FILE" in out
