import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import median_ratio, percentile, rate, ratio


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 99) == pytest.approx(39.7)


def test_percentile_does_not_depend_on_input_order() -> None:
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=60))
def test_percentile_matches_the_standard_library(values: list[float]) -> None:
    expected = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 99) == pytest.approx(expected[98], abs=1e-6)
    assert percentile(values, 50) == pytest.approx(statistics.median(values), abs=1e-6)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.5], 99) == 7.5


@pytest.mark.parametrize("bad", [-1, 101])
def test_percentile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], bad)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_rate_and_ratio() -> None:
    assert rate(1000, 0.5) == 2000
    with pytest.raises(ValueError):
        rate(10, 0)
    assert ratio(30, 10) == 3
    assert ratio(1, 0) is None


def test_median_ratio_pairs_each_repeat_and_skips_empty_denominators() -> None:
    # repeat 2 ran while the machine was busy: both sides slow, the ratio is unchanged
    pairs = [(1000.0, 100.0), (500.0, 50.0), (900.0, 300.0), (10.0, 0.0)]
    assert median_ratio(pairs) == 10.0
    assert median_ratio([(1.0, 0.0)]) is None


def test_percentile_is_the_standard_librarys_quantile(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str]] = []
    original = statistics.quantiles

    def spy(data: list[float], *, n: int, method: str) -> list[float]:
        calls.append((n, method))
        return original(data, n=n, method=method)

    monkeypatch.setattr(statistics, "quantiles", spy)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert calls == [(100, "inclusive")]
    with pytest.raises(ValueError, match="whole number"):
        percentile([1.0, 2.0], 99.5)
