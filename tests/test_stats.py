"""stats.py: Student-t quantiles against published values, the incomplete beta function against closed
forms, paired differences and their intervals against the formula written out."""

import math

import pytest

import stats

# t_{0.975, df} from any table of the t distribution (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 29: 2.045, 100: 1.984}


@pytest.mark.parametrize(("df", "t"), T_975.items())
def test_t_quantile_matches_the_tables(df, t):
    assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-t, abs=5e-4)
    assert stats.t_cdf(stats.t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_incomplete_beta_closed_forms():
    for x in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert stats.incomplete_beta(1.0, 1.0, x) == pytest.approx(x)  # uniform
        assert stats.incomplete_beta(2.0, 1.0, x) == pytest.approx(x**2)
        assert stats.incomplete_beta(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3)
    assert stats.t_cdf(1.0, 1) == pytest.approx(0.5 + math.atan(1.0) / math.pi)  # Cauchy
    with pytest.raises(ValueError, match="0 < p < 1"):
        stats.t_quantile(1.0, 3)


def test_paired_difference_is_the_t_interval_of_the_differences():
    values, reference = [1.30, 1.27, 1.31], [1.40, 1.38, 1.40]
    d = [a - b for a, b in zip(values, reference, strict=True)]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302653 * sd / math.sqrt(3)
    diff = stats.paired_difference(values, reference)
    assert diff["mean"] == pytest.approx(mean) and diff["n"] == 3 and diff["resolved"]
    assert (diff["low"], diff["high"]) == (
        pytest.approx(mean - half, abs=1e-6),
        pytest.approx(mean + half, abs=1e-6),
    )
    assert stats.format_difference(diff).startswith("**-0.100 [")
    noisy = stats.paired_difference([1.0, 1.2, 0.9], [1.1, 1.0, 1.0])
    assert (
        not noisy["resolved"]
        and noisy["low"] < 0 < noisy["high"]
        and stats.format_difference(noisy).endswith("~")
    )
    one = stats.paired_difference([1.0], [1.1])
    assert one["low"] is None and stats.format_difference(one) == "-0.100 (1 seed)"
    assert stats.paired_difference([1.0, None], [1.0, 1.0]) is None and stats.format_difference(None) == "n/a"
    assert stats.summary([1.0, 2.0, 3.0]) == [2.0, 1.0, 3] and stats.summary([1.0, None]) is None
