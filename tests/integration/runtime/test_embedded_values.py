"""SSM parameter types and dynamic references read from the embedded services (embedded_values.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.local.aws import AwsServices
from tidings.local.embedded_values import EmbeddedValues
from tidings.local.template import LocalEndpoints, TemplateError, load_app

TEMPLATE = """AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Region:
    Type: AWS::SSM::Parameter::Value<String>
    Default: /shared/region-name
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Environment:
        Variables:
          REGION_NAME: !Ref Region
          SECOND: "{{resolve:ssm:/shared/region-name:2}}"
          PASSWORD: "{{resolve:secretsmanager:vendor/api:SecretString:password}}"
"""


@pytest.fixture
def aws() -> Iterator[AwsServices]:
    services = AwsServices(port=0)
    services.start_server()
    yield services
    services.stop()


def test_values_already_in_the_embedded_services_resolve(aws: AwsServices, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    endpoints = LocalEndpoints("ws://127.0.0.1:1", "http://127.0.0.1:1", aws.endpoint)
    with pytest.raises(TemplateError, match=r"'/shared/region-name' does not exist in the embedded SSM"):
        load_app(tmp_path / "template.yaml", endpoints, embedded=EmbeddedValues(aws))
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/shared/region-name", Value="north", Type="String")
    ssm.put_parameter(Name="/shared/region-name", Value="south", Type="String", Overwrite=True)
    aws.client("secretsmanager").create_secret(
        Name="vendor/api", SecretString=json.dumps({"password": "from-the-embedded-service"})
    )
    app = load_app(tmp_path / "template.yaml", endpoints, embedded=EmbeddedValues(aws))
    assert app.functions["Fn"].environment == {
        "REGION_NAME": "south",
        "SECOND": "south",
        "PASSWORD": "from-the-embedded-service",
    }
