"""Business hours of a menu option: is it staffed at this moment, and what applies if not.

Pure: the moment is passed in. Windows use the same rules as schedule restrictions (a window
may run past midnight); with ``holidays`` set, its public holidays and closure days are out of
hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fsrouter.config.schema import BusinessHours, Fallback, Option
from fsrouter.routing.holidays import holiday_name
from fsrouter.routing.schedules import in_window


def _local(hours: BusinessHours, moment: datetime, default_zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(hours.timezone or default_zone)).replace(tzinfo=None)


def closed_for(hours: BusinessHours, moment: datetime, default_zone: str) -> str | None:
    """The holiday or closure day that closes the hours at ``moment`` (``Christmas Day
    (AT-9)``), or None."""
    if hours.holidays is None:
        return None
    return holiday_name(hours.holidays, _local(hours, moment, default_zone).date())


def in_hours(hours: BusinessHours, moment: datetime, default_zone: str) -> bool:
    """True if ``moment`` (aware) falls in one of the windows, in the hours' time zone."""
    if closed_for(hours, moment, default_zone) is not None:
        return False
    local = _local(hours, moment, default_zone)
    return any(in_window(window, local) for window in hours.windows)


@dataclass(frozen=True)
class OptionRoute:
    """What a chosen option does now: ring ``policy``, or go straight to ``fallback``."""

    policy: str | None
    fallback: Fallback
    out_of_hours: bool = False


def option_route(option: Option, moment: datetime, default_zone: str) -> OptionRoute:
    """The option's policy in hours; out of hours its ``out_of_hours`` action."""
    if option.hours is None or option.out_of_hours is None or in_hours(
            option.hours, moment, default_zone):
        return OptionRoute(option.policy, option.fallback)
    action = option.out_of_hours
    if action.kind == "policy":
        return OptionRoute(action.target, option.fallback, out_of_hours=True)
    return OptionRoute(None, Fallback(kind=action.kind, target=action.target), out_of_hours=True)
