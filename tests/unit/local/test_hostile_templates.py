"""Hostile templates give one clear TemplateError, never an AttributeError (issue 14, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.local.template import LocalEndpoints, TemplateError, load_app, parse_template

ENDPOINTS = LocalEndpoints("ws://127.0.0.1:3001", "http://127.0.0.1:3000", "http://127.0.0.1:4566")
HOSTILE = {
    "a YAML list": ("- a\n- b\n", "not a list"),
    "an empty file": ("", "no Resources"),
    "a scalar": ("just text\n", "not a str"),
    "no resources": ("AWSTemplateFormatVersion: '2010-09-09'\nResources: {}\n", "no Resources"),
    "a resource without Type": ("Resources:\n  Q:\n    Properties: {}\n", "Q must be a mapping with a Type"),
    "a list of properties": (
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties: [1]\n",
        "Q.Properties must be a mapping",
    ),
    "an intrinsic Default": (
        "Parameters:\n  P:\n    Type: String\n    Default: !Ref AWS::Region\n"
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n",
        "parameter P: Default must be a plain value",
    ),
    "Parameters as a list": (
        "Parameters: [1]\nResources:\n  Q:\n    Type: AWS::SQS::Queue\n",
        "Parameters must",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_templates_are_refused_with_one_line(name: str, tmp_path: Path) -> None:
    text, message = HOSTILE[name]
    path = tmp_path / "template.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError, match=message) as refused:
        load_app(path, ENDPOINTS)
    assert "\n" not in str(refused.value)


def test_a_plain_list_default_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Parameters:\n  P:\n    Type: CommaDelimitedList\n    Default: [a, b]\n"
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n"
    )
    assert parse_template(path)["Parameters"]["P"]["Default"] == ["a", "b"]
