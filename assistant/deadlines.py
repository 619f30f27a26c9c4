"""The deadline calendar: when a data-subject request must be answered.

GDPR Art. 12(3) gives "one month of receipt", extendable by two further months. How periods
are counted comes from Reg. 1182/71: a month ends on the same date next month (clamped to the
month's end), and a period that ends on a Saturday, Sunday or public holiday ends on the next
working day (Art. 3(4)). Organisations often promise "30 days", which in February is LATER than
the legal month, so both dates are computed and staff are held to the earlier one.

Receipt is the date in Europe/Oslo: a mail that arrives at 23:30 UTC on 31 January has reached
a Norwegian company on 1 February, and that is the day the clock starts.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from .vocabulary import ClockMode

OSLO = ZoneInfo("Europe/Oslo")

DEFAULT_COUNTRY = "NO"
DEFAULT_PROMISE_DAYS = 30

# Reg. 1182/71 names Saturdays and Sundays explicitly, whatever the country's holiday list says.
_WEEKEND = frozenset({5, 6})


@dataclass(frozen=True)
class Deadlines:
    """Every date a case needs; all are Oslo calendar dates, not instants."""

    received: date
    legal_due: date
    promised_due: date
    due: date
    extension_notice_by: date
    extended_due: date

    def as_dict(self) -> dict[str, str]:
        """The shape `dsr deadline --json` and the case JSON print: YYYY-MM-DD strings."""
        return {key: value.isoformat() for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Deadlines:
        """Round trip of as_dict, so stored deadlines need not be recomputed."""
        return cls(**{name: date.fromisoformat(data[name]) for name in _DEADLINE_FIELDS})


_DEADLINE_FIELDS = (
    "received",
    "legal_due",
    "promised_due",
    "due",
    "extension_notice_by",
    "extended_due",
)


@lru_cache(maxsize=512)
def _public_holidays(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    """One year's public holidays, shared by every Calendar: the sweep asks thousands of times."""
    return frozenset(_holiday_table(country, subdiv, year).keys())


def _holiday_table(country: str, subdiv: str | None, year: int | None) -> holidays.HolidayBase:
    """Ask `holidays` for public holidays only.

    Some calendars (Norway, Sweden) can list every Sunday as a "holiday", and older releases
    of the package did so by default. Weekends are handled separately, so Sundays are
    switched off here to keep the holiday list to days the law names.
    """
    years = [year] if year is not None else []
    try:
        return holidays.country_holidays(country, subdiv=subdiv, years=years, include_sundays=False)
    except (TypeError, ValueError) as exc:
        if "include_sundays" not in str(exc):
            raise
    return holidays.country_holidays(country, subdiv=subdiv, years=years)


def _as_date(value: date | datetime | str) -> date:
    """Closed dates come from TOML (dates), env vars (strings) or code (maybe datetimes)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip())
    raise TypeError(f"not a date: {value!r}")


class Calendar:
    """Which days count as working days for one organisation.

    Non-working: Saturdays, Sundays, the country's public holidays (optionally a
    subdivision's), and any extra closed dates the organisation names (e.g. the days between
    Christmas and New Year). Cheap to construct and to query: holidays are cached per year.
    """

    __slots__ = ("country", "subdiv", "extra_closed")

    def __init__(
        self,
        country: str = DEFAULT_COUNTRY,
        subdiv: str | None = None,
        extra_closed: Iterable[date] = (),
    ) -> None:
        self.country = country.strip().upper()
        self.subdiv = subdiv.strip() if isinstance(subdiv, str) and subdiv.strip() else None
        self.extra_closed = frozenset(_as_date(d) for d in extra_closed)
        try:  # fail at configuration time, not at the first deadline
            _holiday_table(self.country, self.subdiv, None)
        except NotImplementedError as exc:
            raise ValueError(f"holiday calendar not available: {exc}") from exc

    def __repr__(self) -> str:
        return (
            f"Calendar(country={self.country!r}, subdiv={self.subdiv!r}, "
            f"extra_closed={sorted(self.extra_closed)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calendar):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str | None, frozenset[date]]:
        return (self.country, self.subdiv, self.extra_closed)

    def public_holidays(self, year: int) -> frozenset[date]:
        """The law's holidays for a year (no plain Sundays, no extra closed days)."""
        return _public_holidays(self.country, self.subdiv, year)

    def closed_dates(self, year: int) -> frozenset[date]:
        """Every non-weekend day off in a year: for digests and for staff to check settings."""
        extra = {d for d in self.extra_closed if d.year == year}
        return self.public_holidays(year) | extra

    def is_working_day(self, d: date) -> bool:
        d = _as_date(d)
        if d.weekday() in _WEEKEND or d in self.extra_closed:
            return False
        return d not in _public_holidays(self.country, self.subdiv, d.year)

    def next_working_day(self, d: date) -> date:
        """d itself if it is a working day: Reg. 1182/71 Art. 3(4) moves a period's end forward."""
        d = _as_date(d)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def previous_working_day(self, d: date) -> date:
        """d itself if it is a working day; otherwise the last working day before it."""
        d = _as_date(d)
        while not self.is_working_day(d):
            d -= timedelta(days=1)
        return d

    def add_working_days(self, d: date, n: int) -> date:
        """The n-th working day after d (before d when n < 0); d itself is not counted.

        n == 0 returns d unchanged, so "0 working days before the due date" is the due date.
        The escalation ladder uses this for "remind staff 3 working days before due".
        """
        d = _as_date(d)
        step = timedelta(days=1 if n >= 0 else -1)
        remaining = abs(n)
        while remaining:
            d += step
            if self.is_working_day(d):
                remaining -= 1
        return d

    def working_days_between(self, a: date, b: date) -> int:
        """Signed number of working-day steps from a to b: add_working_days(a, result) == b
        whenever b is a working day.

        Forward (a <= b) it counts working days in (a, b]: "days left" on a case is
        working_days_between(today, due). Backward it counts working days in [b, a) as a
        negative number, so a case due on Friday is already -1 (one working day overdue) on
        Saturday rather than a misleading 0.
        """
        a, b = _as_date(a), _as_date(b)
        if a <= b:
            return self._count_working(a + timedelta(days=1), b)
        return -self._count_working(b, a - timedelta(days=1))

    def _count_working(self, first: date, last: date) -> int:
        """Working days in [first, last]; a loop is fine for the spans a case lives (months)."""
        count = 0
        d = first
        while d <= last:
            count += self.is_working_day(d)
            d += timedelta(days=1)
        return count


_DEFAULT_CALENDAR: Calendar | None = None


def default_calendar() -> Calendar:
    """Norway's public holidays, built once."""
    global _DEFAULT_CALENDAR
    if _DEFAULT_CALENDAR is None:
        _DEFAULT_CALENDAR = Calendar()
    return _DEFAULT_CALENDAR


def receipt_date(received: datetime | date) -> date:
    """The Oslo calendar date of receipt.

    An aware datetime is converted to Oslo; a naive one is taken to be Oslo wall-clock time
    already (that is what staff type when they log a phone call); a plain date is that day.
    """
    if isinstance(received, datetime):
        if received.tzinfo is None or received.utcoffset() is None:
            return received.date()
        return received.astimezone(OSLO).date()
    if isinstance(received, date):
        return received
    raise TypeError(f"receipt must be a date or datetime, not {type(received).__name__}")


def add_months(d: date, months: int) -> date:
    """Same day-of-month `months` later, clamped to the month's end (31 Jan + 1 -> 28/29 Feb)."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last_day = _stdlib_calendar.monthrange(year, month)[1]
    return date(year, month, min(d.day, last_day))


def compute_deadlines(
    received: datetime | date,
    promise_days: int = DEFAULT_PROMISE_DAYS,
    calendar: Calendar | None = None,
) -> Deadlines:
    """All deadlines of a request received at `received` (see module docstring for the law)."""
    if isinstance(promise_days, bool) or not isinstance(promise_days, int):
        raise TypeError(f"promise_days must be an int, not {type(promise_days).__name__}")
    if promise_days < 0:
        raise ValueError(f"promise_days must not be negative (got {promise_days})")
    cal = calendar if calendar is not None else default_calendar()
    start = receipt_date(received)
    legal_due = cal.next_working_day(add_months(start, 1))
    promised_due = cal.next_working_day(start + timedelta(days=promise_days))
    due = min(legal_due, promised_due)
    return Deadlines(
        received=start,
        legal_due=legal_due,
        promised_due=promised_due,
        due=due,
        # Art. 12(3): the requester must hear of an extension "within one month"; holding
        # staff to `due` keeps the notice inside both the law and the promise.
        extension_notice_by=due,
        extended_due=cal.next_working_day(add_months(start, 3)),
    )


def clock_start(
    received_at: datetime | date,
    verified_at: datetime | date | None,
    mode: ClockMode | str = ClockMode.RUNS,
) -> datetime | date | None:
    """When the clock starts under the organisation's setting; None = not started yet.

    The one rule: cases.py asks it when a case opens (nobody verified yet), when verification
    is skipped (as if verified on receipt) and when the requester is verified. With "from_verification", ID checked before the request arrived (a known, logged-in
    customer) cannot start the clock earlier than receipt, so the later of the two is used.
    """
    mode = ClockMode(mode)
    if mode is ClockMode.RUNS:
        return received_at
    if verified_at is None:
        return None
    if receipt_date(verified_at) < receipt_date(received_at):
        return received_at
    return verified_at


def case_deadlines(
    received_at: datetime | date,
    verified_at: datetime | date | None = None,
    mode: ClockMode | str = ClockMode.RUNS,
    promise_days: int = DEFAULT_PROMISE_DAYS,
    calendar: Calendar | None = None,
) -> Deadlines | None:
    """Deadlines of a case under its clock setting; None while waiting for ID if the clock waits.

    Note that `received` in the result is the date the clock started, which under
    "from_verification" is the verification date.
    """
    start = clock_start(received_at, verified_at, mode)
    if start is None:
        return None
    return compute_deadlines(start, promise_days=promise_days, calendar=calendar)


_PARSE_EXAMPLES = "2026-02-01, 2026-02-01T10:00, 2026-01-31T23:30:00Z or 2026-02-01T00:30+01:00"


# Receipt years a request can have: the deadlines (three months on, in Oslo time) and the
# holiday tables must exist for them; year 1 or 9999 would overflow the calendar.
MIN_YEAR, MAX_YEAR = 1900, 9000


def parse_received(text: str) -> datetime | date:
    """Parse the CLI's --received: a date (an Oslo day), a naive (Oslo) or an offset date-time."""
    if not isinstance(text, str):
        raise ValueError(f"receipt time must be ISO 8601 text ({_PARSE_EXAMPLES})")
    cleaned = text.strip()
    if not cleaned:
        raise ValueError(f"empty receipt time; expected ISO 8601 such as {_PARSE_EXAMPLES}")
    try:
        parsed: datetime | date = date.fromisoformat(cleaned)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(cleaned)
        except ValueError:
            raise ValueError(
                f"{text!r} is not an ISO 8601 date or date-time; expected e.g. {_PARSE_EXAMPLES}"
            ) from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"the year {parsed.year} is outside {MIN_YEAR}-{MAX_YEAR}")
    return parsed
