"""faults.py's control requests: a bad shape is a 400 with a clear message and changes nothing (item 3)."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.local.faults import FaultRequestError, Faults, parse_request

FUNCTIONS = {"NotifyFunction", "TranscodeSegmentFunction"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"throttle": [1]}, "throttle must be an object"),
        ({"throttle": "0.5"}, "throttle must be an object"),
        ({"dynamodbOutage": 5}, "dynamodbOutage must be an object"),
        ({"killAfterPosts": 3}, "killAfterPosts must be an object"),
        ({"killWhenBusy": ["NotifyFunction"]}, "killWhenBusy must be an object"),
        ({"reset": "yes"}, "reset must be true or false"),
        ({"throttle": {"fraction": 2}}, "throttle.fraction"),
        ({"killWhenBusy": {"function": "Nope"}}, "killWhenBusy.function must be one of"),
        ([], "non-empty JSON object"),
        ({"explode": True}, "unknown fault"),
    ],
)
def test_bad_shapes_are_refused_with_a_message(body: Any, message: str) -> None:
    with pytest.raises(FaultRequestError, match=message):
        parse_request(FUNCTIONS, body)


def test_a_request_with_one_bad_part_changes_nothing() -> None:
    faults = Faults()
    body = {
        "throttle": {"fraction": 0.5},
        "killWhenBusy": {"function": "NotifyFunction"},
        "dynamodbOutage": 5,
    }
    with pytest.raises(FaultRequestError):
        parse_request(FUNCTIONS, body).apply(faults)
    assert faults.throttle_fraction == 0.0 and faults.kill_when_busy is None
    assert faults.snapshot()["dynamodbDownForSeconds"] == 0.0


def test_a_valid_request_applies_all_of_it_and_reset_clears_it() -> None:
    faults = Faults()
    parse_request(
        FUNCTIONS,
        {
            "throttle": {"fraction": 0.5, "seed": 7, "maxPerMessage": 2},
            "killAfterPosts": {"function": "NotifyFunction", "posts": 3, "jobId": "j-1"},
            "dynamodbOutage": {"seconds": 30},
        },
    ).apply(faults)
    assert (faults.throttle_fraction, faults.throttle_max_per_message) == (0.5, 2)
    assert faults.kill_after_posts is not None and faults.kill_after_posts.posts == 3
    assert faults.snapshot()["dynamodbDownForSeconds"] > 29
    parse_request(FUNCTIONS, {"killAfterPosts": None}).apply(faults)
    assert faults.kill_after_posts is None and faults.throttle_fraction == 0.5  # untouched parts stay
    parse_request(FUNCTIONS, {"reset": True}).apply(faults)
    assert faults.throttle_fraction == 0.0 and faults.snapshot()["dynamodbDownForSeconds"] == 0.0
