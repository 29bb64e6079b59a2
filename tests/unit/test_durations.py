from datetime import timedelta

import pytest

from aigate.api.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(minutes=90)),
        ("168h", timedelta(days=7)),
        ("1.5h", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("0s", timedelta(0)),
    ],
)
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "m", "1d", "-5s", "5 s", "1h 30m", None, 30])
def test_parse_rejects_and_says_what_it_found(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(seconds=90), "1m30s"), (timedelta(hours=168), "168h"), (timedelta(0), "0s")],
)
def test_format(delta, text):
    assert format_duration(delta) == text
    assert parse_duration(text) == delta
