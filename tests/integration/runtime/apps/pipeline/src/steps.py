"""Small Lambda handlers for the state machine tests."""

import time

ATTEMPTS: dict[str, int] = {}


class FlakyError(Exception):
    pass


class CustomError(Exception):
    pass


def double(event, context):
    return {"value": event["value"] * 2, "index": event["index"], "label": event["label"], "at": time.time()}


def flaky(event, context):
    # the retry reuses this warm worker, so the count lives in the module
    key = event["execution"]
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] < 3:
        raise FlakyError(f"attempt {ATTEMPTS[key]} failed")
    return {"attempts": ATTEMPTS[key]}


def boom(event, context):
    raise CustomError("it broke")
