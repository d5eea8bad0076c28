"""IAM enforced on a test app's function: what its role lacks is refused with the service's shape."""

from __future__ import annotations

from .runtime_stack import APPS, running

TEMPLATE = APPS / "iam" / "template.yaml"


async def test_a_call_the_role_does_not_allow_is_refused_as_aws_refuses_it() -> None:
    async with running(TEMPLATE) as runtime:
        invocation = await runtime.runner.invoke("Reader", {})
    assert invocation.ok, invocation.error_message
    result = invocation.result
    assert result["put"] == {"status": 200}
    assert result["upload"] == {"status": 200}
    session = "arn:aws:sts::123456789012:assumed-role/rt-ReaderRole/rt-Reader"
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/rt-Items"
    assert result["get"] == {
        "status": 400,
        "code": "AccessDeniedException",
        "message": f"User: {session} is not authorized to perform: dynamodb:GetItem on resource: {table} "
        "because no identity-based policy allows the dynamodb:GetItem action",
    }
    assert result["download"]["status"] == 403 and result["download"]["code"] == "AccessDenied"
    assert "s3:GetObject on resource: arn:aws:s3:::rt-files/in/x" in result["download"]["message"]
    assert session in result["download"]["message"]


async def test_a_state_machine_role_without_invoke_fails_the_task_as_step_functions_does() -> None:
    pipeline = APPS / "pipeline" / "template.yaml"
    async with running(pipeline) as runtime:
        # the Strict machine's role may invoke BoomFunction only: call another function through it
        machine = runtime.app.state_machines["Strict"]
        denied = runtime.machines.may_invoke
        assert denied is not None
        message = denied("Strict", runtime.app.functions["DoubleFunction"].arn)
        assert message is not None and "lambda:InvokeFunction" in message and machine.name in message
        assert denied("Strict", runtime.app.functions["BoomFunction"].arn) is None
