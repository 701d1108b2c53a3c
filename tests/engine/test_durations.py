"""Durations: UCUM-typed, calendar-aware spans of time used for due dates, offsets and reminders."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from zorgpad.engine import Duration, days, hours, minutes, months, weeks, years

UNITS = ("min", "h", "d", "wk", "mo", "a")
FIXED_UNITS = ("min", "h", "d", "wk")

durations = st.builds(Duration, st.integers(min_value=0, max_value=1000), st.sampled_from(UNITS))
instants = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2150, 12, 31), timezones=st.just(UTC))


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC moment."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def end_of_day(year: int, month: int, day: int) -> datetime:
    """The last moment of a day: where a clamped month lands, so that Duration.after stays monotonic."""
    return at(year, month, day).replace(hour=23, minute=59, second=59, microsecond=999999)


class TestCalendarArithmetic:
    """Months and years are calendar units; the other units have a fixed length."""

    def test_one_month_after_31_january_is_28_february_in_a_common_year(self) -> None:
        """A month after the 31st lands at the end of the last day of a shorter month."""
        result = months(1).after(at(2025, 1, 31))

        assert end_of_day(2025, 2, 28) == result

    def test_one_month_after_31_january_is_29_february_in_a_leap_year(self) -> None:
        """A month after 31 January 2024 is the leap day."""
        result = months(1).after(at(2024, 1, 31))

        assert end_of_day(2024, 2, 29) == result

    def test_one_month_after_31_march_is_30_april(self) -> None:
        """Clamping works for 30-day months too, not only February."""
        result = months(1).after(at(2025, 3, 31))

        assert end_of_day(2025, 4, 30) == result

    def test_months_roll_over_into_the_next_year(self) -> None:
        """Two months after 31 December is the end of February of the next year."""
        result = months(2).after(at(2025, 12, 31))

        assert end_of_day(2026, 2, 28) == result

    def test_thirteen_months_cross_a_year_and_land_on_a_leap_day(self) -> None:
        """More than twelve months carry into the year and clamp in the target year."""
        result = months(13).after(at(2027, 1, 31))

        assert end_of_day(2028, 2, 29) == result

    def test_one_year_after_a_leap_day_is_28_february(self) -> None:
        """A year after 29 February lands on 28 February of a common year."""
        result = years(1).after(at(2024, 2, 29))

        assert end_of_day(2025, 2, 28) == result

    def test_four_years_after_a_leap_day_is_a_leap_day(self) -> None:
        """Years are twelve calendar months each, so a leap day survives to the next leap year."""
        result = years(4).after(at(2024, 2, 29))

        assert at(2028, 2, 29) == result

    def test_calendar_units_keep_the_time_of_day_and_the_time_zone(self) -> None:
        """Adding months changes only the date."""
        start = at(2025, 5, 15, 14, 30)

        result = months(3).after(start)

        assert at(2025, 8, 15, 14, 30) == result
        assert result.tzinfo is UTC

    def test_a_month_is_not_thirty_days(self) -> None:
        """One month after 1 February 2025 is 1 March, 28 days later, not 30."""
        result = months(1).after(at(2025, 2, 1))

        assert at(2025, 3, 1) == result

    @pytest.mark.parametrize(
        ("duration", "expected"),
        [
            (minutes(90), timedelta(minutes=90)),
            (hours(25), timedelta(hours=25)),
            (days(28), timedelta(days=28)),
            (weeks(2), timedelta(days=14)),
        ],
    )
    def test_fixed_units_add_their_exact_length(self, duration: Duration, expected: timedelta) -> None:
        """Minutes, hours, days and weeks add an exact timedelta."""
        start = at(2025, 1, 31, 23, 0)

        result = duration.after(start)

        assert start + expected == result

    def test_a_zero_duration_is_the_same_moment(self) -> None:
        """Nothing is added for zero units of any kind."""
        start = at(2025, 1, 31, 12)

        results = {Duration(0, unit).after(start) for unit in UNITS}

        assert {start} == results


class TestApproximateAndAdd:
    """Fixed-length stand-ins and sums, used to compare reminders with escalations."""

    @pytest.mark.parametrize(
        ("duration", "expected"),
        [
            (months(3), timedelta(days=90)),
            (years(2), timedelta(days=730)),
            (weeks(3), timedelta(days=21)),
            (hours(2), timedelta(hours=2)),
        ],
    )
    def test_approximate_uses_thirty_day_months_and_365_day_years(
        self, duration: Duration, expected: timedelta
    ) -> None:
        """approximate() gives a comparable fixed length."""
        result = duration.approximate()

        assert expected == result

    def test_adding_durations_of_one_unit_keeps_the_unit(self) -> None:
        """Two weeks plus one week is three weeks, still in weeks."""
        result = weeks(2) + weeks(1)

        assert Duration(3, "wk") == result

    def test_adding_durations_of_different_units_gives_minutes(self) -> None:
        """A day plus two hours is 26 hours, expressed in minutes."""
        result = days(1) + hours(2)

        assert Duration(26 * 60, "min") == result

    def test_multiplying_scales_the_value(self) -> None:
        """weeks(2) * 3 is six weeks."""
        result = weeks(2) * 3

        assert weeks(6) == result

    def test_adding_a_number_to_a_duration_is_a_type_error(self) -> None:
        """Only durations add up; a bare number is refused."""
        with pytest.raises(TypeError):
            days(1) + 3  # type: ignore[operator]

    def test_a_duration_is_immutable(self) -> None:
        """Durations are values: they cannot be changed in place."""
        duration = days(3)

        with pytest.raises(dataclasses.FrozenInstanceError):
            duration.value = 4  # type: ignore[misc]


class TestStr:
    """Durations read as English."""

    @pytest.mark.parametrize(
        ("duration", "expected"),
        [
            (days(1), "1 day"),
            (days(28), "28 days"),
            (weeks(1), "1 week"),
            (weeks(2), "2 weeks"),
            (months(1), "1 month"),
            (months(3), "3 months"),
            (years(1), "1 year"),
            (years(5), "5 years"),
            (hours(1), "1 hour"),
            (minutes(0), "0 minutes"),
        ],
    )
    def test_str_names_the_value_and_the_unit_in_singular_or_plural(self, duration: Duration, expected: str) -> None:
        """str() uses the singular for exactly one and the plural otherwise."""
        result = str(duration)

        assert expected == result


class TestInvalidValues:
    """Bad durations are refused when they are made, with a message naming the value."""

    def test_a_fractional_value_is_a_type_error(self) -> None:
        """Durations are whole numbers of units."""
        expected = "a Duration's value must be a whole number (got 1.5)"

        with pytest.raises(TypeError) as exc_info:
            Duration(1.5, "d")  # type: ignore[arg-type]

        assert expected == str(exc_info.value)

    def test_a_boolean_value_is_a_type_error(self) -> None:
        """True is an int to Python but not a number of days."""
        expected = "a Duration's value must be a whole number (got True)"

        with pytest.raises(TypeError) as exc_info:
            days(True)

        assert expected == str(exc_info.value)

    def test_a_string_value_is_a_type_error(self) -> None:
        """'7' is not 7."""
        expected = "a Duration's value must be a whole number (got '7')"

        with pytest.raises(TypeError) as exc_info:
            days("7")  # type: ignore[arg-type]

        assert expected == str(exc_info.value)

    def test_a_negative_value_is_a_value_error(self) -> None:
        """Durations point forward in time."""
        with pytest.raises(ValueError, match=r"^a Duration cannot be negative \(got -2\)$"):
            weeks(-2)

    def test_multiplying_by_a_negative_number_is_refused(self) -> None:
        """The product is validated like any new duration."""
        with pytest.raises(ValueError, match=r"^a Duration cannot be negative \(got -3\)$"):
            days(3) * -1

    def test_an_unknown_unit_is_a_value_error_listing_the_units(self) -> None:
        """The message lists every UCUM unit that is accepted."""
        expected = "a Duration's unit must be one of min, h, d, wk, mo, a (got 's')"

        with pytest.raises(ValueError, match="unit") as exc_info:
            Duration(1, "s")  # type: ignore[arg-type]

        assert expected == str(exc_info.value)


class TestMonotonicity:
    """A later starting moment never gives an earlier result."""

    @given(durations, instants, instants)
    @example(months(1), at(2025, 1, 30, 23, 0), at(2025, 1, 31, 0, 0))
    def test_after_is_monotonic_in_its_starting_moment(self, duration: Duration, a: datetime, b: datetime) -> None:
        """For any duration, starting later never ends earlier (so a later task is never due sooner)."""
        earlier, later = sorted((a, b))

        first, second = duration.after(earlier), duration.after(later)

        assert first <= second, f"{duration} after {earlier} is {first}, after {later} it is {second}"

    @given(st.integers(min_value=0, max_value=1000), st.sampled_from(FIXED_UNITS), instants, instants)
    def test_fixed_units_keep_the_distance_between_two_starting_moments(
        self, value: int, unit: str, a: datetime, b: datetime
    ) -> None:
        """With fixed-length units two results are exactly as far apart as their starting moments."""
        duration = Duration(value, unit)  # type: ignore[arg-type]
        earlier, later = sorted((a, b))

        difference = duration.after(later) - duration.after(earlier)

        assert later - earlier == difference

    @given(durations, instants)
    def test_after_never_goes_back_in_time(self, duration: Duration, start: datetime) -> None:
        """The result is never before the starting moment."""
        result = duration.after(start)

        assert result >= start
