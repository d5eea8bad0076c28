"""A running runtime (embedded AWS + functions + event delivery) for a test app's template."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidings.local.aws import STEP_FUNCTIONS_API, AwsServices
from tidings.local.aws_guard import issue_app_credentials, may_invoke
from tidings.local.bus import EventDelivery
from tidings.local.functions import FunctionRunner
from tidings.local.model import LocalApp
from tidings.local.stepfunctions import StepFunctions
from tidings.local.stepfunctions_api import StepFunctionsApi
from tidings.local.template import LocalEndpoints, load_app

APPS = Path(__file__).parent / "apps"


@dataclass
class Runtime:
    app: LocalApp
    aws: AwsServices
    runner: FunctionRunner
    delivery: EventDelivery
    machines: StepFunctions


@asynccontextmanager
async def running(template: Path, **delivery_options: Any) -> AsyncIterator[Runtime]:
    aws = AwsServices(port=0)
    endpoint = aws.start_server()
    try:
        app = load_app(
            template, LocalEndpoints("ws://127.0.0.1:1", "http://127.0.0.1:1", endpoint), stack_name="rt"
        )
        issued = issue_app_credentials(aws.credentials, app)  # IAM as `tidings dev` enforces it
        aws.create_resources(app)
        runner = FunctionRunner(
            app,
            endpoint,
            watch=False,
            credentials={fid: keys.environment() for fid, keys in issued.functions.items()},
        )
        await runner.start()
        machines = StepFunctions(
            app,
            runner,
            retry_delay_scale=0.01,
            may_invoke=lambda machine, arn: may_invoke(issued.machines[machine], arn),
        )
        delivery = EventDelivery(
            app,
            runner,
            endpoint,
            start_execution=machines.start_execution,
            credentials=aws.credentials.boto_credentials,
            **{"retry_delay_scale": 0.001, "lambda_retry_delay_scale": 0.001, **delivery_options},
        )
        aws.route_events(delivery)
        aws.add_interceptor(StepFunctionsApi(machines, asyncio.get_running_loop()), STEP_FUNCTIONS_API)
        try:
            yield Runtime(app, aws, runner, delivery, machines)
        finally:
            delivery.uninstall()
            await machines.stop()
            await runner.stop()
    finally:
        aws.stop()
