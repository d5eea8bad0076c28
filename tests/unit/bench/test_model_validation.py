"""The model's local parameters and the comparison with the measured run (bench/model_validation.py)."""

from __future__ import annotations

import random

from bench import aws_model, model_validation

FIGURES = {
    "cpus": 2,
    "dynamodb": {"call_ms": 5.0, "call_p10_ms": 4.0, "call_p90_ms": 9.0, "query_ms_per_item": 0.2},
    "bus_to_notify": {"p50_ms": 11.0, "max_ms": 80.0},
    "invoke_ms": 4.0,
    "management_api": {"latency_ms": 1.5, "capacity_per_s": 1000.0, "connections": 64},
}


def test_the_local_figures_become_the_models_services() -> None:
    services = model_validation.local_services(FIGURES)
    assert services.eventbridge_ms == (11.0, 80.0) and services.dynamodb_ms == (4.0, 9.0)
    assert services.query_ms_per_item == 0.2 and services.invoke_api_ms == 4.0
    assert services.api_capacity_rps == 1000.0 and aws_model.AWS.api_capacity_rps is None


def test_one_local_server_answers_posts_in_turn_at_its_capacity() -> None:
    rng = random.Random(0)
    local = aws_model.World(
        rng, [], 1.5, 0.4, aws_model.TokenBucket(1e9, 1e9), aws_model.Services(api_capacity_rps=1000.0)
    )
    answers = [local.answer_at(0.0) for _ in range(3)]
    assert answers == [0.0015, 0.002, 0.003]  # latency first, then one per millisecond
    fleet = aws_model.World(rng, [], 20.0, 0.4, aws_model.TokenBucket(1e9, 1e9))
    assert [fleet.answer_at(0.0) for _ in range(3)] == [0.02] * 3


def test_a_slower_local_server_predicts_a_slower_run() -> None:
    fast = model_validation.predict(FIGURES, 0.4, seeds=1)
    slow_api = {**FIGURES["management_api"], "capacity_per_s": 500.0}
    slow = model_validation.predict({**FIGURES, "management_api": slow_api}, 0.4, seeds=1)
    assert 0 < fast["p50_ms"] <= fast["p99_ms"] < slow["p99_ms"]


def test_compare_sets_the_measured_run_beside_the_prediction() -> None:
    prediction = {"figures": FIGURES, "predicted": {"p50_ms": 800.0, "p99_ms": 1200.0}, "n": 1000}
    row = model_validation.compare(prediction, {"p50_ms": 1000.0, "p99_ms": 1800.0, "repeats": 3})
    assert row is not None
    assert {k: row["measured"][k] for k in ("p50_ms", "p99_ms")} == {"p50_ms": 1000.0, "p99_ms": 1800.0}
    assert row["measured_over_predicted"] == {"p50_ms": 1.25, "p99_ms": 1.5}
    assert model_validation.compare(prediction, None) == prediction
    assert model_validation.compare(None, {"p50_ms": 1.0}) is None
