"""faults.py's control requests: a bad shape is a 400 with a clear message and changes nothing (item 3)."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.local.faults import FaultRequestError, Faults, Workers, parse_request, throttle_and_count

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
            "killAfterPosts": {"function": "NotifyFunction", "posts": 3},
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


def only_tag(value: Any) -> Any:
    if not isinstance(value, str):
        raise FaultRequestError("killAfterPosts.tag must be a string")
    return lambda data: data.startswith(value.encode())


class NoBusyWorkers:
    """The one host hook `Workers` reads: which pids are inside an invocation (none here)."""

    def busy_worker_pids(self, function_id: str) -> list[int]:
        return []


def test_kill_after_posts_takes_only_the_post_filters_it_is_given() -> None:
    with pytest.raises(FaultRequestError, match="killAfterPosts takes function, posts, not tag"):
        parse_request(FUNCTIONS, {"killAfterPosts": {"function": "NotifyFunction", "posts": 1, "tag": "a"}})
    with pytest.raises(FaultRequestError, match="tag must be a string"):
        parse_request(
            FUNCTIONS,
            {"killAfterPosts": {"function": "NotifyFunction", "posts": 1, "tag": 3}},
            {"tag": only_tag},
        )


def test_kill_after_posts_counts_only_the_delivered_posts_its_filters_match() -> None:
    faults = Faults()
    spec = {"function": "NotifyFunction", "posts": 2, "tag": "a"}
    parse_request(FUNCTIONS, {"killAfterPosts": spec}, {"tag": only_tag}).apply(faults)
    post = throttle_and_count(faults, Workers(NoBusyWorkers()))  # type: ignore[arg-type]
    statuses = {b"a1": 200, b"b1": 200, b"a2": 410, b"a3": 200}
    for data in statuses:
        assert post("c1", data, lambda _connection, body: statuses[body]) == statuses[data]
    # a1 and a3 counted (b1 does not match, a2 was not delivered): the kill fired once, then disarmed
    assert faults.kill_after_posts is None
    assert faults.snapshot()["killed"] == [{"function": "NotifyFunction", "pids": [], "afterPosts": 2}]


def test_throttled_posts_answer_429_without_reaching_the_connection() -> None:
    faults = Faults()
    parse_request(FUNCTIONS, {"throttle": {"fraction": 1.0, "maxPerMessage": 1}}).apply(faults)
    post = throttle_and_count(faults, Workers(NoBusyWorkers()))  # type: ignore[arg-type]
    delivered: list[bytes] = []

    def deliver(connection_id: str, data: bytes) -> int:
        delivered.append(data)
        return 200

    assert post("c1", b"m", deliver) == 429
    assert post("c1", b"m", deliver) == 200  # at most once per message
    assert delivered == [b"m"] and faults.snapshot()["throttled"] == 1
