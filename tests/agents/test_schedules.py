"""Per-episode schedules for alpha and epsilon (agents.tabular.schedules)."""

from __future__ import annotations

import pytest

from agents.tabular.schedules import (
    Constant,
    Exponential,
    Linear,
    Schedule,
    as_schedule,
    format_schedule,
    parse_schedule,
)


def test_constant_is_the_same_every_episode() -> None:
    assert [Constant(0.3)(k) for k in (0, 1, 10_000)] == [0.3, 0.3, 0.3]


def test_linear_interpolates_then_stays_flat() -> None:
    schedule = Linear(start=1.0, end=0.2, episodes=400)
    assert schedule(0) == 1.0
    assert schedule(100) == pytest.approx(0.8)
    assert schedule(200) == pytest.approx(0.6)
    assert schedule(400) == pytest.approx(0.2)
    assert schedule(10_000) == pytest.approx(0.2)


def test_exponential_decays_geometrically_down_to_its_floor() -> None:
    schedule = Exponential(start=1.0, end=0.01, decay=0.99)
    assert schedule(0) == 1.0
    assert schedule(1) == pytest.approx(0.99)
    assert schedule(100) == pytest.approx(0.99**100)  # 0.366
    # 0.99**k < 0.01 once k > log(0.01) / log(0.99) = 458.2
    assert schedule(458) > 0.01
    assert schedule(459) == 0.01
    assert schedule(5_000) == 0.01


def test_as_schedule_wraps_numbers_and_keeps_schedules() -> None:
    assert as_schedule(0.5) == Constant(0.5)
    linear = Linear(1.0, 0.0, 10)
    assert as_schedule(linear) is linear
    assert isinstance(linear, Schedule)
    with pytest.raises(TypeError, match="number or a Schedule"):
        as_schedule("0.5")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.1", Constant(0.1)),
        ("linear:1.0:0.05:400", Linear(1.0, 0.05, 400)),
        ("exp:1.0:0.01:0.99", Exponential(1.0, 0.01, 0.99)),
        (" LINEAR:1:0:5 ", Linear(1.0, 0.0, 5)),
    ],
)
def test_parse_schedule_reads_the_command_line_forms(text: str, expected: Schedule) -> None:
    assert parse_schedule(text) == expected
    assert parse_schedule(format_schedule(expected)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "fast", "linear:1.0:0.1", "linear:1.0:0.1:2.5", "linear:1:0:0", "exp:1.0:0.1:1.5", "cos:1:0:5", "nan"],
)
def test_parse_schedule_names_the_text_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="cannot parse schedule") as error:
        parse_schedule(text)
    assert repr(text) in str(error.value)
    assert "linear:<start>:<end>:<episodes>" in str(error.value)


def test_format_schedule_rejects_schedules_without_a_text_form() -> None:
    with pytest.raises(ValueError, match="no text form"):
        format_schedule(lambda episode: 0.1)
