"""Business hours of a menu option (pure)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from fsrouter.config.schema import Option
from fsrouter.routing.hours import in_hours, option_route

BERLIN = ZoneInfo("Europe/Berlin")


def option(**extra) -> Option:
    return Option.model_validate({"digit": 1, "label": "Support", "policy": "day", **extra})


HOURS = {"windows": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}], "holidays": "BY"}


@pytest.mark.parametrize(("local", "expected"), [
    ("2026-12-02 07:59", False),   # Wednesday before opening
    ("2026-12-02 08:00", True),
    ("2026-12-02 17:59", True),
    ("2026-12-02 18:00", False),
    ("2026-12-05 10:00", False),   # Saturday
    ("2026-01-06 10:00", False),   # Heilige Drei Könige: a holiday in Bavaria
    ("2026-10-26 10:00", True),    # Monday after the clocks went back
])
def test_in_hours(local, expected):
    opt = option(hours=HOURS, out_of_hours="policy:night")
    moment = datetime.fromisoformat(local).replace(tzinfo=BERLIN)
    assert in_hours(opt.hours, moment, "Europe/Berlin") is expected


def test_the_same_instant_in_another_zone():
    opt = option(hours={**HOURS, "timezone": "America/New_York", "holidays": None},
                 out_of_hours="policy:night")
    moment = datetime(2026, 12, 2, 15, 0, tzinfo=BERLIN)  # 09:00 in New York
    assert in_hours(opt.hours, moment, "Europe/Berlin") is True
    assert in_hours(opt.hours, moment.replace(hour=13), "Europe/Berlin") is False


def test_routes():
    moment_out = datetime(2026, 12, 5, 10, 0, tzinfo=BERLIN)
    moment_in = datetime(2026, 12, 2, 10, 0, tzinfo=BERLIN)
    other_policy = option(hours=HOURS, out_of_hours="policy:night")
    assert option_route(other_policy, moment_in, "Europe/Berlin").policy == "day"
    route = option_route(other_policy, moment_out, "Europe/Berlin")
    assert (route.policy, route.out_of_hours) == ("night", True)
    mailbox = option_route(option(hours=HOURS, out_of_hours="voicemail:anna"), moment_out,
                           "Europe/Berlin")
    assert (mailbox.policy, str(mailbox.fallback)) == (None, "voicemail:anna")
    assert option_route(option(), moment_out, "Europe/Berlin").policy == "day"


def test_hours_and_action_come_together():
    with pytest.raises(ValueError, match="hours and out_of_hours together"):
        option(hours=HOURS)


# --- holidays of any country, closure days (issue 19) -----------------------------------------


def test_holiday_names_for_other_countries_and_closure_days():
    from datetime import date

    from fsrouter.routing.holidays import holiday_name

    assert holiday_name("CH-ZH", date(2026, 5, 1)) == "Labor Day (CH-ZH)"
    assert holiday_name("CH-GE", date(2026, 5, 1)) is None
    assert holiday_name("AT-9", date(2026, 12, 26)) == "Saint Stephen's Day (AT-9)"
    assert holiday_name("BY", date(2026, 1, 6)) == "Epiphany (DE-BY)"
    closures = {"closed": [{"date": "12-24", "name": "Heiliger Abend"}, "2026-12-28"]}
    assert holiday_name(_spec(closures), date(2031, 12, 24)) == \
        "Heiliger Abend (company closure)"
    assert holiday_name(_spec(closures), date(2026, 12, 28)) == "company closure"
    assert holiday_name(_spec(closures), date(2027, 12, 28)) is None  # once only


def _spec(value):
    from pydantic import TypeAdapter

    from fsrouter.config.holidays import HolidaysSpec

    return TypeAdapter(HolidaysSpec).validate_python(value)


def test_business_hours_are_closed_on_a_closure_day():
    opt = option(hours={"windows": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}],
                        "holidays": {"country": "AT", "subdivision": "W",  # alias of 9
                                     "closed": ["12-31"]}},
                 out_of_hours="voicemail:anna")
    assert opt.hours.holidays.label == "AT-9"
    vienna = ZoneInfo("Europe/Vienna")
    assert not in_hours(opt.hours, datetime(2026, 12, 31, 10, tzinfo=vienna), "Europe/Vienna")
    assert in_hours(opt.hours, datetime(2026, 12, 30, 10, tzinfo=vienna), "Europe/Vienna")
