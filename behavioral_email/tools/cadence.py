"""Local-time cadence: pure functions, no ORM.

When may a step run for a recipient? Inside the step's send window (hours of
the day and weekdays) and outside the company's quiet hours, both read in the
recipient's own time zone. :func:`next_allowed_time` gives the first allowed
minute at or after a local moment; :func:`recipient_timezone` picks the time
zone to read it in.
"""
from datetime import datetime, time, timedelta

import pytz

try:
    import phonenumbers
    from phonenumbers import timezone as phone_timezone
except ImportError:  # pragma: no cover - declared in the manifest
    phonenumbers = None

# why a moment is not allowed (the first rule that refuses it)
BLOCK_WEEKDAY = "weekday"
BLOCK_WINDOW = "window"
BLOCK_QUIET = "quiet"

ALL_WEEKDAYS = frozenset(range(7))


def hour_to_minutes(hour):
    """A float hour of the day (9.5 = 09:30) as minutes since midnight."""
    return max(0, min(24 * 60, int(round((hour or 0.0) * 60))))


def format_hour(hour):
    """09:30 for 9.5; 24:00 for 24.0."""
    minutes = hour_to_minutes(hour)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def in_range(minute, start, end, empty_is_all):
    """Whether ``minute`` (since midnight) is in [start, end), the range
    wrapping over midnight when start > end. An empty range (start == end)
    covers the whole day when ``empty_is_all``, nothing otherwise."""
    if start == end:
        return empty_is_all
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def blocked_by(local_dt, window=(0.0, 24.0), weekdays=ALL_WEEKDAYS, quiet=(0.0, 0.0)):
    """The rule that refuses ``local_dt`` (BLOCK_*), or None when allowed.

    :param tuple window: (from hour, to hour) the step may run; (0, 24) = all day
    :param weekdays: allowed weekdays, Monday = 0
    :param tuple quiet: (start hour, end hour) of the quiet hours, wrapping
        over midnight when start > end; equal hours mean no quiet hours
    """
    minute = local_dt.hour * 60 + local_dt.minute
    if local_dt.weekday() not in weekdays:
        return BLOCK_WEEKDAY
    if not in_range(minute, hour_to_minutes(window[0]), hour_to_minutes(window[1]), True):
        return BLOCK_WINDOW
    if in_range(minute, hour_to_minutes(quiet[0]), hour_to_minutes(quiet[1]), False):
        return BLOCK_QUIET
    return None


def next_allowed_time(local_dt, window=(0.0, 24.0), weekdays=ALL_WEEKDAYS, quiet=(0.0, 0.0)):
    """The first allowed local moment at or after ``local_dt`` (naive, in the
    recipient's zone), and the rule that held it back (None if not held).

    The allowed moments are a union of intervals whose left ends are a
    window start, a quiet-hours end or a midnight (a weekday starting): the
    answer is ``local_dt`` itself or the first such boundary that is allowed.
    Never drops: with no allowed moment at all (no weekday), the result is
    ``None`` and the caller decides.

    :return tuple: (datetime or None, BLOCK_* or None)
    """
    weekdays = frozenset(weekdays) if weekdays is not None else ALL_WEEKDAYS
    if not weekdays:
        return None, BLOCK_WEEKDAY
    reason = blocked_by(local_dt, window, weekdays, quiet)
    if reason is None:
        return local_dt, None
    starts = {0, hour_to_minutes(window[0]) % (24 * 60)}
    quiet_start, quiet_end = hour_to_minutes(quiet[0]), hour_to_minutes(quiet[1])
    if quiet_start != quiet_end:
        starts.add(quiet_end % (24 * 60))
    day = datetime.combine(local_dt.date(), time.min)
    for offset in range(9):
        for minute in sorted(starts):
            candidate = day + timedelta(days=offset, minutes=minute)
            if candidate > local_dt and blocked_by(candidate, window, weekdays, quiet) is None:
                return candidate, reason
    return None, reason


def localize(utc_naive, tz_name):
    """A naive UTC datetime as a naive local time in ``tz_name``."""
    zone = pytz.timezone(tz_name)
    return pytz.utc.localize(utc_naive).astimezone(zone).replace(tzinfo=None)


def to_utc(local_naive, tz_name):
    """A naive local time in ``tz_name`` as a naive UTC datetime. A local time
    skipped by a daylight-saving jump is read as if standard time went on."""
    zone = pytz.timezone(tz_name)
    return zone.normalize(zone.localize(local_naive, is_dst=False)).astimezone(pytz.utc).replace(tzinfo=None)


def phone_timezone_name(number, region=None):
    """The time zone of a phone number when it has exactly one, else None."""
    if not number or phonenumbers is None:
        return None
    try:
        parsed = phonenumbers.parse(number, region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    zones = [z for z in phone_timezone.time_zones_for_number(parsed) if z in pytz.all_timezones_set]
    return zones[0] if len(zones) == 1 else None


def country_timezone_name(country_code):
    """The time zone of a country when it has exactly one, else None."""
    zones = pytz.country_timezones.get((country_code or "").upper()) or []
    return zones[0] if len(zones) == 1 else None


def recipient_timezone(partner_tz=None, numbers=(), country_code=None, fallback=None, region=None):
    """The time zone to read a recipient's local time in.

    Their own ``tz``; else the zone of their mobile or phone number (when the
    number has exactly one; a national number is read in their country, else
    in ``region``); else their country's (when it has exactly one); else
    ``fallback`` (the company's zone); else UTC.
    """
    if partner_tz and partner_tz in pytz.all_timezones_set:
        return partner_tz
    for number in numbers:
        zone = phone_timezone_name(number, country_code or region)
        if zone:
            return zone
    zone = country_timezone_name(country_code)
    if zone:
        return zone
    if fallback and fallback in pytz.all_timezones_set:
        return fallback
    return "UTC"
