"""moto's ASL interpreter against the cases our own (tidings/local/stepfunctions.py) passes.

    .venv/bin/python -m bench.stepfunctions_moto

Not part of `make bench`: the evidence behind keeping our interpreter (docs/architecture.md,
"Step Functions: our interpreter, not moto's"). It switches moto's interpreter on in the
embedded endpoint, points its Lambda client at that endpoint (moto builds it for
localhost:$MOTO_PORT), runs each case through boto3 and prints `ok` or `FAIL` with what came
back. Nothing here is used by the stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ARN = "arn:aws:lambda:us-east-1:123456789012:function:work"
ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = """AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  WorkFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: work
      Runtime: python3.12
      CodeUri: src/
      Handler: app.handler
      Timeout: 10
"""

HANDLER = """import time
class ItemFailed(Exception):
    pass
def handler(event, context):
    if isinstance(event, dict) and event.get("hold"):
        time.sleep(event["hold"])
    if isinstance(event, dict) and event.get("fail"):
        raise ItemFailed("bad item")
    if isinstance(event, dict) and event.get("grow"):
        return {"blob": "x" * event["grow"]}
    return event
"""


def _task(**extra: Any) -> dict[str, Any]:
    return {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": ARN, "End": True, **extra}}}


def _map(**extra: Any) -> dict[str, Any]:
    processor = {"StartAt": "Do", "States": {"Do": {"Type": "Task", "Resource": ARN, "End": True}}}
    each = {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": processor, "End": True, **extra}
    return {"StartAt": "Each", "States": {"Each": each}}


def _catch_all(**extra: Any) -> dict[str, Any]:
    definition = _task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], **extra)
    definition["States"]["Caught"] = {"Type": "Succeed"}
    return definition


CHOICE = {
    "StartAt": "Pick",
    "States": {
        "Pick": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
            "Default": "Other",
        },
        "Big": {"Type": "Pass", "Result": "big", "End": True},
        "Other": {"Type": "Fail", "Error": "NoMatch", "Cause": "nothing"},
    },
}
TIMEOUT = _task(
    TimeoutSeconds=1,
    Catch=[
        {"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
        {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.why", "Next": "Right"},
    ],
)
TIMEOUT["States"]["Wrong"] = {"Type": "Succeed"}
TIMEOUT["States"]["Right"] = {"Type": "Pass", "OutputPath": "$.why.Error", "End": True}
ITEMS = {"items": [{"i": 0}, {"i": 1, "fail": True}, {"i": 2}]}
INVOKE = {
    "StartAt": "Call",
    "States": {
        "Call": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "work", "Payload": {"job.$": "$.job"}},
            "OutputPath": "$.Payload",
            "End": True,
        }
    },
}

# (label, definition, input, expected status, expected error or output JSON; None: any)
CASES: list[tuple[str, dict[str, Any], Any, str, str | None]] = [
    ("Choice to a Pass state", CHOICE, {"n": 12}, "SUCCEEDED", '"big"'),
    ("Choice default to a Fail state", CHOICE, {"n": 1}, "FAILED", "NoMatch"),
    ("Map: an item fails", _map(), ITEMS, "FAILED", "ItemFailed"),
    ("Map: ToleratedFailureCount 1", _map(ToleratedFailureCount=1), ITEMS, "SUCCEEDED", None),
    (
        "Map: ToleratedFailurePercentage 0",
        _map(ToleratedFailurePercentage=0),
        ITEMS,
        "FAILED",
        "States.ExceedToleratedFailureThreshold",
    ),
    ("TimeoutSeconds: States.Timeout, not TaskFailed", TIMEOUT, {"hold": 4}, "SUCCEEDED", '"States.Timeout"'),
    (
        "HeartbeatSeconds on a Lambda task",
        _task(HeartbeatSeconds=1, TimeoutSeconds=5),
        {"hold": 2},
        "SUCCEEDED",
        None,
    ),
    ("lambda:invoke wraps the Payload", INVOKE, {"job": "j", "other": 1}, "SUCCEEDED", '{"job": "j"}'),
    (
        "Retry States.ALL, 1 s x 2",
        _task(Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2}]),
        {"fail": True},
        "FAILED",
        "ItemFailed",
    ),
    (
        "States.ALL does not catch States.Runtime",
        _catch_all(Parameters={"x.$": "$.missing"}),
        {},
        "FAILED",
        "States.Runtime",
    ),
    (
        "States.ALL does not catch States.DataLimitExceeded",
        _catch_all(),
        {"grow": 300_000},
        "FAILED",
        "States.DataLimitExceeded",
    ),
]


def _switch_moto_interpreter_on(endpoint: str, admin: dict[str, str]) -> None:
    """POST /moto-api/config (admin-signed) on the embedded endpoint: moto's executions run."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    config = AWSRequest(
        method="POST",
        url=f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    keys = BotoCredentials(admin["aws_access_key_id"], admin["aws_secret_access_key"])
    SigV4Auth(keys, "s3", "us-east-1").add_auth(config)
    body = config.data if isinstance(config.data, bytes) else b""
    request = urllib.request.Request(str(config.url), data=body, headers=dict(config.headers.items()))  # noqa: S310
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310


async def main() -> int:
    from tidings.local.aws import LAMBDA_INVOKE, AwsServices
    from tidings.local.bus import EventDelivery
    from tidings.local.functions import FunctionRunner
    from tidings.local.lambda_invoke import LambdaInvoke
    from tidings.local.stack import free_port
    from tidings.local.template import LocalEndpoints, load_app

    app_dir = Path(tempfile.mkdtemp(prefix="sfn-moto-"))
    (app_dir / "src").mkdir()
    (app_dir / "template.yaml").write_text(TEMPLATE)
    (app_dir / "src" / "app.py").write_text(HANDLER)

    aws = AwsServices(port=0)
    port = str(free_port("127.0.0.1"))
    os.environ["MOTO_PORT"] = port  # moto's interpreter calls back to it (in the AWS process)
    aws.port = int(port)
    endpoint = aws.start_server()
    # moto runs in its own process (tidings/local/aws_process.py): its config goes over the endpoint
    await asyncio.to_thread(_switch_moto_interpreter_on, endpoint, aws.credentials.admin.boto())
    app = load_app(
        app_dir / "template.yaml",
        LocalEndpoints("ws://127.0.0.1:1", "http://127.0.0.1:1", endpoint),
        stack_name="m",
    )
    aws.create_resources(app)
    runner = FunctionRunner(app, endpoint, watch=False)
    await runner.start()
    delivery = EventDelivery(app, runner, endpoint)
    aws.add_interceptor(
        LambdaInvoke(app, runner, delivery.lambda_async.invoke, asyncio.get_running_loop()), LAMBDA_INVOKE
    )
    sfn = aws.client("stepfunctions")
    failed = 0
    try:
        transcoder = (ROOT / "src" / "transcode_worker" / "statemachine.asl.json").read_text()
        try:
            sfn.create_state_machine(
                name="transcoder", definition=transcoder, roleArn="arn:aws:iam::123456789012:role/r"
            )
            print("ok    statemachine.asl.json accepted as written")
        except Exception as error:
            failed += 1
            print(f"FAIL  statemachine.asl.json accepted as written: {str(error)[:140]}")
        for number, (label, definition, data, status, detail) in enumerate(CASES):
            try:
                arn = sfn.create_state_machine(
                    name=f"case{number}",
                    definition=json.dumps(definition),
                    roleArn="arn:aws:iam::123456789012:role/r",
                )["stateMachineArn"]
            except Exception as error:
                failed += 1
                print(f"FAIL  {label}: CreateStateMachine refused it: {str(error)[:120]}")
                continue
            began = time.monotonic()
            execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(data))["executionArn"]
            while True:
                described = await asyncio.to_thread(sfn.describe_execution, executionArn=execution)
                if described["status"] != "RUNNING" or time.monotonic() - began > 30:
                    break
                await asyncio.sleep(0.05)
            got = described.get("output") if described["status"] == "SUCCEEDED" else described.get("error")
            ok = described["status"] == status and (detail is None or got == detail)
            failed += not ok
            print(
                f"{'ok  ' if ok else 'FAIL'}  {label}: {described['status']} {str(got)[:70]} "
                f"in {time.monotonic() - began:.2f} s"
            )
    finally:
        await runner.stop()
        aws.stop()
    print(f"{len(CASES) + 1 - failed} passed, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
