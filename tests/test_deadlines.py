"""Tests of the deadline calendar (GDPR Art. 12(3) counted per Reg. 1182/71, Oslo time).

Expected dates are worked out by hand in the comments: the weekday facts they rely on are
checked separately (test_weekday_facts_used_in_comments) and Easter comes from the
Meeus/Jones/Butcher algorithm, so nothing here is copied from the function under test.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.deadlines import (
    OSLO,
    Calendar,
    ClockMode,
    Deadlines,
    add_months,
    case_deadlines,
    clock_start,
    compute_deadlines,
    parse_received,
    receipt_date,
)

UTC = timezone.utc
D = date.fromisoformat
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def easter_sunday(year: int) -> date:
    """Anonymous Gregorian algorithm (Meeus/Jones/Butcher), independent of `holidays`."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


def norwegian_public_holidays(year: int) -> set[date]:
    """Helligdagsloven §2 plus 1 and 17 May (lov 26. april 1947): the law's list, by hand."""
    e = easter_sunday(year)
    return {
        date(year, 1, 1),  # 1. nyttårsdag
        e - timedelta(days=3),  # skjærtorsdag
        e - timedelta(days=2),  # langfredag
        e,  # 1. påskedag
        e + timedelta(days=1),  # 2. påskedag
        date(year, 5, 1),  # offentlig høytidsdag
        date(year, 5, 17),  # grunnlovsdag
        e + timedelta(days=39),  # Kristi himmelfartsdag
        e + timedelta(days=49),  # 1. pinsedag
        e + timedelta(days=50),  # 2. pinsedag
        date(year, 12, 25),  # 1. juledag
        date(year, 12, 26),  # 2. juledag
    }


# ---------------------------------------------------------------------------------------------
# Facts the hand computations below rely on.

def test_easter_algorithm_matches_known_dates():
    # Published Easter Sundays (church calendars), to make sure the helper itself is right.
    assert easter_sunday(2026) == D("2026-04-05")
    assert easter_sunday(2027) == D("2027-03-28")
    assert easter_sunday(2028) == D("2028-04-16")
    assert easter_sunday(2029) == D("2029-04-01")
    assert easter_sunday(2030) == D("2030-04-21")


WEEKDAY_FACTS = [
    ("2026-01-01", THU), ("2026-02-01", SUN), ("2026-02-10", TUE), ("2026-03-01", SUN),
    ("2026-03-02", MON), ("2026-03-03", TUE), ("2026-03-10", TUE), ("2026-03-11", WED),
    ("2026-04-01", WED), ("2026-04-30", THU), ("2026-05-01", FRI), ("2026-05-04", MON),
    ("2026-05-14", THU), ("2026-05-17", SUN), ("2026-05-25", MON), ("2026-06-30", TUE),
    ("2026-07-30", THU), ("2026-07-31", FRI), ("2026-08-01", SAT), ("2026-08-03", MON),
    ("2026-09-30", WED), ("2026-10-31", SAT), ("2026-11-30", MON), ("2026-12-25", FRI),
    ("2026-12-31", THU), ("2027-01-01", FRI), ("2027-01-31", SUN), ("2027-02-01", MON),
    ("2027-02-28", SUN), ("2027-03-01", MON), ("2027-03-02", TUE), ("2027-03-27", SAT),
    ("2027-05-17", MON), ("2028-01-31", MON), ("2028-02-29", TUE), ("2028-03-01", WED),
    ("2028-04-30", SUN), ("2028-05-01", MON), ("2028-05-02", TUE), ("2029-03-02", FRI),
    ("2029-12-25", TUE), ("2030-04-17", WED), ("2026-02-11", WED), ("2026-02-28", SAT),
    ("2026-03-30", MON), ("2026-04-29", WED), ("2026-04-28", TUE), ("2026-10-26", MON),
    ("2026-11-25", WED), ("2026-11-24", TUE), ("2026-03-28", SAT), ("2026-03-29", SUN),
    ("2026-10-24", SAT), ("2026-10-25", SUN), ("2027-03-30", TUE), ("2028-04-18", TUE),
    ("2029-04-03", TUE), ("2030-04-23", TUE), ("2029-12-27", THU), ("2027-01-04", MON),
    ("2026-05-15", FRI), ("2026-05-26", TUE), ("2027-05-18", TUE), ("2026-05-18", MON),
]


@pytest.mark.parametrize(("day", "weekday"), WEEKDAY_FACTS)
def test_weekday_facts_used_in_comments(day: str, weekday: int):
    assert D(day).weekday() == weekday


# ---------------------------------------------------------------------------------------------
# Table: (received, promise_days, legal_due, promised_due, extended_due), each explained.
# due == min(legal, promised) and extension_notice_by == due are checked for every row.

DEADLINE_TABLE = [
    pytest.param(
        # Known check. +1 month = Sun 1 Mar -> Mon 2 Mar. +30 days: Feb 2026 has 28 days, so
        # 1 Feb + 30 = 3 Mar (Tue). +3 months = Fri 1 May (Labour Day) -> Sat, Sun -> Mon 4 May.
        "2026-02-01", 30, "2026-03-02", "2026-03-03", "2026-05-04", id="feb-2026-known-check",
    ),
    pytest.param(
        # 31 Jan + 1 month clamps to 28 Feb 2027 (Sun) -> Mon 1 Mar. 31 Jan + 30 = 2 Mar (Tue).
        # +3 months = 30 Apr 2027 clamped (Fri, Easter 2027 was 28 Mar: an ordinary day).
        "2027-01-31", 30, "2027-03-01", "2027-03-02", "2027-04-30", id="jan31-non-leap-2027",
    ),
    pytest.param(
        # Leap year: 31 Jan + 1 month clamps to 29 Feb 2028 (Tue, working).
        # 31 Jan + 30 days = 1 Mar 2028 (Wed). +3 months = 30 Apr 2028 (Sun) -> Mon 1 May
        # (Labour Day) -> Tue 2 May.
        "2028-01-31", 30, "2028-02-29", "2028-03-01", "2028-05-02", id="jan31-leap-2028",
    ),
    pytest.param(
        # 31 Mar -> 30 Apr clamped (Thu). 31 Mar + 30 = 30 Apr. +3 months = 30 Jun clamped (Tue).
        "2026-03-31", 30, "2026-04-30", "2026-04-30", "2026-06-30", id="31st-to-30-day-month",
    ),
    pytest.param(
        # 31 Aug -> 30 Sep clamped (Wed); +30 days is also 30 Sep. +3 months = 30 Nov (Mon).
        "2026-08-31", 30, "2026-09-30", "2026-09-30", "2026-11-30", id="aug31-to-sep30",
    ),
    pytest.param(
        # 31 Oct -> 30 Nov (Mon). +30 days = 30 Nov. +3 months = 31 Jan 2027 (Sun) -> Mon 1 Feb.
        "2026-10-31", 30, "2026-11-30", "2026-11-30", "2027-02-01", id="oct31-to-nov30",
    ),
    pytest.param(
        # A 31-day month: 10 Jan + 1 month = 10 Feb (Tue); 10 Jan + 30 = 9 Feb (Mon), which is
        # earlier, so the promise wins. +3 months = 10 Apr 2026 (Fri, after Easter Monday 6 Apr).
        "2026-01-10", 30, "2026-02-10", "2026-02-09", "2026-04-10", id="promise-earlier-jan",
    ),
    pytest.param(
        # Easter 2026 (5 Apr): 2 Mar + 1 month = Thu 2 Apr (Maundy Thursday) -> Fri 3 (Good
        # Friday) -> Sat 4 -> Sun 5 (Easter) -> Mon 6 (Easter Monday) -> Tue 7 Apr.
        # 2 Mar + 30 = 1 Apr (Wed, working). +3 months = 2 Jun (Tue).
        "2026-03-02", 30, "2026-04-07", "2026-04-01", "2026-06-02", id="easter-2026",
    ),
    pytest.param(
        # Same, with a 31-day promise: 2 Mar + 31 = 2 Apr (Maundy Thursday) -> Tue 7 Apr.
        "2026-03-02", 31, "2026-04-07", "2026-04-07", "2026-06-02", id="easter-2026-promise-31",
    ),
    pytest.param(
        # Easter 2027 (28 Mar): 25 Feb + 1 month = Thu 25 Mar (Maundy) -> Fri 26 (Good Friday)
        # -> Sat, Sun -> Mon 29 (Easter Monday) -> Tue 30 Mar. 25 Feb + 30: Feb 2027 has 28 days,
        # so 27 Mar (Sat) -> Sun 28 -> Mon 29 (holiday) -> Tue 30. +3 months = 25 May 2027 (Tue;
        # Whit Monday 2027 is 17 May).
        "2027-02-25", 30, "2027-03-30", "2027-03-30", "2027-05-25", id="easter-2027",
    ),
    pytest.param(
        # Easter 2028 (16 Apr): 14 Mar + 1 month = Fri 14 Apr (Good Friday) -> Sat, Sun ->
        # Mon 17 (Easter Monday) -> Tue 18 Apr. 14 Mar + 30 = 13 Apr (Maundy Thursday) -> Tue 18.
        # +3 months = 14 Jun 2028 (Wed; Whit Monday 2028 is 5 Jun).
        "2028-03-14", 30, "2028-04-18", "2028-04-18", "2028-06-14", id="easter-2028",
    ),
    pytest.param(
        # Easter 2029 (1 Apr): 2 Mar + 1 month = Mon 2 Apr (Easter Monday) -> Tue 3 Apr.
        # 2 Mar + 30 = 1 Apr (Easter Sunday) -> Mon 2 (holiday) -> Tue 3. +3 months = 2 Jun
        # 2029 (Sat) -> Sun 3 -> Mon 4 Jun.
        "2029-03-02", 30, "2029-04-03", "2029-04-03", "2029-06-04", id="easter-2029",
    ),
    pytest.param(
        # Easter 2030 (21 Apr): 18 Mar + 1 month = Thu 18 Apr (Maundy) -> Fri 19 (Good Friday)
        # -> Sat, Sun -> Mon 22 (Easter Monday) -> Tue 23 Apr. 18 Mar + 30 = 17 Apr (Wed,
        # working). +3 months = 18 Jun 2030 (Tue; Whit Monday 2030 is 10 Jun).
        "2030-03-18", 30, "2030-04-23", "2030-04-17", "2030-06-18", id="easter-2030",
    ),
    pytest.param(
        # Labour Day: 1 Apr + 1 month = Fri 1 May -> Sat, Sun -> Mon 4 May. 1 Apr + 30 = 1 May
        # -> Mon 4 May. +3 months = 1 Jul (Wed).
        "2026-04-01", 30, "2026-05-04", "2026-05-04", "2026-07-01", id="may-1-2026",
    ),
    pytest.param(
        # Constitution Day on a weekday: 17 Apr 2027 (Sat) + 1 month = Mon 17 May 2027 (17 May,
        # and also Whit Monday: Easter 28 Mar + 50) -> Tue 18 May. 17 Apr + 30 = 17 May -> 18 May.
        # +3 months = 17 Jul 2027 (Sat) -> Mon 19 Jul.
        "2027-04-17", 30, "2027-05-18", "2027-05-18", "2027-07-19", id="may-17-2027",
    ),
    pytest.param(
        # 17 May 2026 is a Sunday: 17 Apr + 1 month = Sun 17 May -> Mon 18 May (working:
        # Norway does not move a holiday off a Sunday). +3 months = 17 Jul 2026 (Fri).
        "2026-04-17", 30, "2026-05-18", "2026-05-18", "2026-07-17", id="may-17-2026-sunday",
    ),
    pytest.param(
        # Ascension 2026 = Easter + 39 = Thu 14 May: 14 Apr + 1 month = 14 May -> Fri 15 May.
        # 14 Apr + 30 = 14 May -> 15 May. +3 months = 14 Jul (Tue).
        "2026-04-14", 30, "2026-05-15", "2026-05-15", "2026-07-14", id="ascension-2026",
    ),
    pytest.param(
        # Whit Monday 2026 = Easter + 50 = Mon 25 May: 25 Apr + 1 month = 25 May -> Tue 26 May.
        # 25 Apr + 30 = 25 May -> 26 May. +3 months = 25 Jul (Sat) -> Mon 27 Jul.
        "2026-04-25", 30, "2026-05-26", "2026-05-26", "2026-07-27", id="whit-monday-2026",
    ),
    pytest.param(
        # Christmas 2026: 25 Nov + 1 month = Fri 25 Dec -> Sat 26 (also 2nd Christmas Day) ->
        # Sun 27 -> Mon 28 Dec. 25 Nov + 30 = 25 Dec -> 28 Dec. +3 months = 25 Feb 2027 (Thu).
        "2026-11-25", 30, "2026-12-28", "2026-12-28", "2027-02-25", id="christmas-2026",
    ),
    pytest.param(
        # Christmas 2029 on weekdays: 25 Nov + 1 month = Tue 25 Dec -> Wed 26 (2nd Christmas
        # Day) -> Thu 27 Dec. 25 Nov + 30 = 25 Dec -> 27 Dec. +3 months = 25 Feb 2030 (Mon).
        "2029-11-25", 30, "2029-12-27", "2029-12-27", "2030-02-25", id="christmas-2029",
    ),
    pytest.param(
        # New Year: 1 Dec 2026 + 1 month = Fri 1 Jan 2027 -> Sat, Sun -> Mon 4 Jan.
        # 1 Dec + 30 = Thu 31 Dec, an ordinary working day (New Year's Eve is no public
        # holiday), so the promise wins. +3 months = 1 Mar 2027 (Mon).
        "2026-12-01", 30, "2027-01-04", "2026-12-31", "2027-03-01", id="new-year-2027",
    ),
]


@pytest.mark.parametrize(
    ("received", "promise", "legal", "promised", "extended"), DEADLINE_TABLE
)
def test_deadline_table(received, promise, legal, promised, extended):
    result = compute_deadlines(D(received), promise_days=promise)
    assert result.received == D(received)
    assert result.legal_due == D(legal)
    assert result.promised_due == D(promised)
    assert result.due == min(D(legal), D(promised))
    assert result.extension_notice_by == result.due
    assert result.extended_due == D(extended)


def test_as_dict_keys_and_format():
    result = compute_deadlines(D("2026-02-01"))
    assert result.as_dict() == {
        "received": "2026-02-01",
        "legal_due": "2026-03-02",
        "promised_due": "2026-03-03",
        "due": "2026-03-02",
        "extension_notice_by": "2026-03-02",
        "extended_due": "2026-05-04",
    }
    assert Deadlines.from_dict(result.as_dict()) == result


# ---------------------------------------------------------------------------------------------
# The Oslo midnight edge. Winter: Oslo = UTC+1 (CET); summer: UTC+2 (CEST). In 2026 summer
# time starts Sun 29 Mar at 01:00 UTC and ends Sun 25 Oct at 01:00 UTC.

MIDNIGHT_TABLE = [
    # Known check: 23:30 UTC on 31 Jan is 00:30 CET on 1 Feb.
    ("2026-01-31T23:30:00+00:00", "2026-02-01"),
    # 22:59 UTC on 31 Jan is 23:59 CET, still 31 Jan.
    ("2026-01-31T22:59:00+00:00", "2026-01-31"),
    # Exactly 23:00 UTC is 00:00 CET on 1 Feb.
    ("2026-01-31T23:00:00+00:00", "2026-02-01"),
    # Winter, mid-week: 22:30 UTC 10 Feb = 23:30 CET 10 Feb; 23:30 UTC = 00:30 CET 11 Feb.
    ("2026-02-10T22:30:00+00:00", "2026-02-10"),
    ("2026-02-10T23:30:00+00:00", "2026-02-11"),
    # Summer: 21:30 UTC 30 Jun = 23:30 CEST 30 Jun; 22:30 UTC = 00:30 CEST 1 Jul (in winter
    # 22:30 UTC would still be the same day, as the row above shows).
    ("2026-06-30T21:30:00+00:00", "2026-06-30"),
    ("2026-06-30T22:30:00+00:00", "2026-07-01"),
    # The night before summer time starts (still CET): 22:30 UTC 28 Mar = 23:30 on 28 Mar,
    # 23:30 UTC = 00:30 on 29 Mar.
    ("2026-03-28T22:30:00+00:00", "2026-03-28"),
    ("2026-03-28T23:30:00+00:00", "2026-03-29"),
    # The evening of the change day is CEST: 21:30 UTC 29 Mar = 23:30; 22:30 UTC = 00:30 30 Mar.
    ("2026-03-29T21:30:00+00:00", "2026-03-29"),
    ("2026-03-29T22:30:00+00:00", "2026-03-30"),
    # The night before summer time ends (CEST): 21:30 UTC 24 Oct = 23:30, 22:30 UTC = 00:30 25 Oct.
    ("2026-10-24T21:30:00+00:00", "2026-10-24"),
    ("2026-10-24T22:30:00+00:00", "2026-10-25"),
    # The evening of the change day is CET again: 22:30 UTC 25 Oct = 23:30; 23:30 UTC = 00:30 26th.
    ("2026-10-25T22:30:00+00:00", "2026-10-25"),
    ("2026-10-25T23:30:00+00:00", "2026-10-26"),
    # Offsets other than UTC: 00:30+02:00 on 1 Feb is 22:30 UTC 31 Jan = 23:30 CET on 31 Jan.
    ("2026-02-01T00:30:00+02:00", "2026-01-31"),
    ("2026-02-01T00:30:00+01:00", "2026-02-01"),
    # New York (UTC-5 in winter): 18:30 on 31 Jan = 23:30 UTC = 00:30 CET on 1 Feb.
    ("2026-01-31T18:30:00-05:00", "2026-02-01"),
]


@pytest.mark.parametrize(("instant", "oslo_day"), MIDNIGHT_TABLE)
def test_oslo_midnight_edge(instant: str, oslo_day: str):
    assert receipt_date(datetime.fromisoformat(instant)) == D(oslo_day)
    assert compute_deadlines(datetime.fromisoformat(instant)).received == D(oslo_day)


def test_midnight_edge_changes_the_due_date():
    # 10 Feb 2026 (Tue) + 1 month = Tue 10 Mar; 11 Feb + 1 month = Wed 11 Mar. Both 30-day
    # promises land later (12 and 13 Mar), so due follows the legal date.
    before = compute_deadlines(datetime(2026, 2, 10, 22, 30, tzinfo=UTC))
    after = compute_deadlines(datetime(2026, 2, 10, 23, 30, tzinfo=UTC))
    assert before.due == D("2026-03-10")
    assert after.due == D("2026-03-11")
    # Summer: 30 Jun + 30 = Thu 30 Jul (legal 30 Jul too); 1 Jul + 30 = Fri 31 Jul, while
    # 1 Jul + 1 month = Sat 1 Aug -> Mon 3 Aug.
    june = compute_deadlines(datetime(2026, 6, 30, 21, 30, tzinfo=UTC))
    july = compute_deadlines(datetime(2026, 6, 30, 22, 30, tzinfo=UTC))
    assert (june.legal_due, june.due) == (D("2026-07-30"), D("2026-07-30"))
    assert (july.legal_due, july.promised_due, july.due) == (
        D("2026-08-03"),
        D("2026-07-31"),
        D("2026-07-31"),
    )


@pytest.mark.parametrize(
    ("naive", "oslo_day"),
    [
        # A naive time is Oslo wall-clock time already: no conversion.
        (datetime(2026, 1, 31, 23, 30), "2026-01-31"),
        (datetime(2026, 2, 1, 0, 30), "2026-02-01"),
        # 02:30 on 29 Mar 2026 does not exist in Oslo (clocks jump 02:00 -> 03:00), and 02:30
        # on 25 Oct happens twice; either way the day is that date.
        (datetime(2026, 3, 29, 2, 30), "2026-03-29"),
        (datetime(2026, 10, 25, 2, 30), "2026-10-25"),
    ],
)
def test_naive_datetime_is_oslo_local(naive: datetime, oslo_day: str):
    assert receipt_date(naive) == D(oslo_day)


def test_plain_date_is_that_day():
    assert receipt_date(D("2026-02-01")) == D("2026-02-01")


def test_receipt_rejects_non_dates():
    with pytest.raises(TypeError):
        receipt_date("2026-02-01")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# parse_received


@pytest.mark.parametrize(
    ("text", "oslo_day", "kind"),
    [
        ("2026-02-01", "2026-02-01", date),
        ("2026-02-01T10:00", "2026-02-01", datetime),
        ("2026-02-01 10:00", "2026-02-01", datetime),
        ("  2026-02-01T10:00:00  ", "2026-02-01", datetime),
        ("2026-01-31T23:30:00Z", "2026-02-01", datetime),
        ("2026-01-31T23:30:00+00:00", "2026-02-01", datetime),
        ("2026-02-01T00:30+01:00", "2026-02-01", datetime),
        ("2026-02-01T00:30+02:00", "2026-01-31", datetime),
    ],
)
def test_parse_received(text: str, oslo_day: str, kind: type):
    parsed = parse_received(text)
    assert type(parsed) is kind
    assert receipt_date(parsed) == D(oslo_day)


def test_parse_received_keeps_offset_and_naivety():
    assert parse_received("2026-02-01T10:00").tzinfo is None
    assert parse_received("2026-01-31T23:30:00Z").utcoffset() == timedelta(0)
    assert parse_received("2026-02-01T00:30+01:00").utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    "text", ["", "   ", "tomorrow", "2026-02-30", "2026-13-01T00:00", "01.02.2026", "10:00"]
)
def test_parse_received_rejects_with_clear_message(text: str):
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_received(text)


# ---------------------------------------------------------------------------------------------
# add_months


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-31", 1, "2026-02-28"),  # Feb 2026 has 28 days
        ("2028-01-31", 1, "2028-02-29"),  # 2028 is divisible by 4, not by 100: leap
        ("2100-01-31", 1, "2100-02-28"),  # 2100 is divisible by 100, not 400: no leap
        ("2000-01-31", 1, "2000-02-29"),  # 2000 is divisible by 400: leap
        ("2026-03-31", 1, "2026-04-30"),  # April has 30 days
        ("2026-01-15", 1, "2026-02-15"),  # no clamping needed
        ("2026-11-30", 3, "2027-02-28"),  # crosses the year, clamped
        ("2026-12-31", 1, "2027-01-31"),  # December -> January of the next year
        ("2026-03-31", -1, "2026-02-28"),  # backwards, clamped
        ("2026-01-15", -1, "2025-12-15"),  # backwards across the year
        ("2026-05-20", 0, "2026-05-20"),
        ("2026-01-31", 12, "2027-01-31"),
    ],
)
def test_add_months(start: str, months: int, expected: str):
    assert add_months(D(start), months) == D(expected)


# ---------------------------------------------------------------------------------------------
# The calendar: which days are working days.

YEARS = range(2026, 2031)


@pytest.mark.parametrize("year", YEARS)
def test_norwegian_holidays_are_closed(year: int):
    cal = Calendar()
    e = easter_sunday(year)
    named = {
        "maundy thursday": e - timedelta(days=3),
        "good friday": e - timedelta(days=2),
        "easter monday": e + timedelta(days=1),
        "ascension": e + timedelta(days=39),
        "whit monday": e + timedelta(days=50),
        "labour day": date(year, 5, 1),
        "constitution day": date(year, 5, 17),
        "christmas": date(year, 12, 25),
        "boxing day": date(year, 12, 26),
        "new year": date(year, 1, 1),
    }
    for name, day in named.items():
        assert not cal.is_working_day(day), f"{name} {day} must be closed"
    # The Wednesday before Maundy Thursday is an ordinary day (no holiday falls 4 days before
    # Easter), as are Christmas Eve and New Year's Eve unless they fall on a weekend.
    assert cal.is_working_day(e - timedelta(days=4))
    for eve in (date(year, 12, 24), date(year, 12, 31)):
        assert cal.is_working_day(eve) == (eve.weekday() < SAT)


@pytest.mark.parametrize("year", YEARS)
def test_only_weekends_and_public_holidays_are_closed(year: int):
    """Guards against the package's option of listing every Sunday (or anything else) as a
    holiday: a whole year is compared with the law's list, day by day."""
    cal = Calendar()
    law = norwegian_public_holidays(year)
    assert cal.public_holidays(year) == law
    day = date(year, 1, 1)
    while day.year == year:
        expected = day.weekday() < SAT and day not in law
        assert cal.is_working_day(day) == expected, day
        day += timedelta(days=1)


def test_working_day_count_2026():
    # 2026 starts on a Thursday and has 365 days = 52 weeks + 1 Thursday: 52*5 + 1 = 261
    # weekdays. Public holidays on weekdays: 1 Jan (Thu), 2, 3, 6 Apr, 1 May (Fri), 14 May,
    # 25 May, 25 Dec (Fri) = 8 (17 May is a Sunday, 26 Dec a Saturday). 261 - 8 = 253.
    cal = Calendar()
    assert cal.working_days_between(D("2025-12-31"), D("2026-12-31")) == 253


def test_extra_closed_dates():
    # A company closed Mon 2 Mar 2026: the known check's 2 Mar moves on to Tue 3 Mar.
    cal = Calendar(extra_closed=[D("2026-03-02")])
    result = compute_deadlines(D("2026-02-01"), calendar=cal)
    assert result.legal_due == D("2026-03-03")
    assert result.due == D("2026-03-03")
    assert not cal.is_working_day(D("2026-03-02"))
    assert Calendar().is_working_day(D("2026-03-02"))
    # Strings (from env vars) and datetimes are accepted as closed dates too.
    assert Calendar(extra_closed=["2026-03-02"]) == cal
    assert Calendar(extra_closed=[datetime(2026, 3, 2, 12, 0)]) == cal
    assert D("2026-03-02") in cal.closed_dates(2026)


def test_company_christmas_closure():
    # Closed 28-31 Dec 2026. From 1 Dec, +30 days = Thu 31 Dec (closed) -> Fri 1 Jan (New
    # Year) -> Sat, Sun -> Mon 4 Jan 2027, the same day as the legal date.
    closure = [D("2026-12-28"), D("2026-12-29"), D("2026-12-30"), D("2026-12-31")]
    result = compute_deadlines(D("2026-12-01"), calendar=Calendar(extra_closed=closure))
    assert result.promised_due == D("2027-01-04")
    assert result.due == D("2027-01-04")


def test_calendar_settings():
    assert Calendar("no") == Calendar("NO")
    assert Calendar("NO", subdiv="03").is_working_day(D("2026-03-02"))
    assert not Calendar("NO", subdiv="03").is_working_day(D("2026-05-17"))
    with pytest.raises(ValueError):
        Calendar("XX")
    with pytest.raises(ValueError):
        Calendar("NO", subdiv="99")
    # Another country's calendar is honoured: Sweden's National Day, 6 Jun 2029, a Wednesday,
    # is a working day in Norway but not in Sweden.
    assert D("2029-06-06").weekday() == WED
    assert Calendar("NO").is_working_day(D("2029-06-06"))
    assert not Calendar("SE").is_working_day(D("2029-06-06"))


# ---------------------------------------------------------------------------------------------
# Working-day helpers.


def test_next_working_day():
    cal = Calendar()
    assert cal.next_working_day(D("2026-03-02")) == D("2026-03-02")  # Mon: itself
    assert cal.next_working_day(D("2026-02-28")) == D("2026-03-02")  # Sat -> Mon
    assert cal.next_working_day(D("2026-04-02")) == D("2026-04-07")  # Maundy Thu -> Tue
    assert cal.previous_working_day(D("2026-04-06")) == D("2026-04-01")  # Easter Mon -> Wed


def test_add_working_days():
    cal = Calendar()
    # Wed 1 Apr 2026 + 1 working day: Thu 2, Fri 3, Sat, Sun, Mon 6 all closed -> Tue 7.
    assert cal.add_working_days(D("2026-04-01"), 1) == D("2026-04-07")
    # Tue 7 Apr - 1 working day = Wed 1 Apr (back over Easter).
    assert cal.add_working_days(D("2026-04-07"), -1) == D("2026-04-01")
    # Three working days before Mon 2 Mar 2026: Fri 27, Thu 26, Wed 25 Feb.
    assert cal.add_working_days(D("2026-03-02"), -3) == D("2026-02-25")
    # Fri 27 Feb + 5 working days = Mon 2 .. Fri 6 Mar.
    assert cal.add_working_days(D("2026-02-27"), 5) == D("2026-03-06")
    # Zero working days: the date itself, even a Sunday.
    assert cal.add_working_days(D("2026-03-01"), 0) == D("2026-03-01")
    # From a Sunday, +1 is Monday and -1 is Friday.
    assert cal.add_working_days(D("2026-03-01"), 1) == D("2026-03-02")
    assert cal.add_working_days(D("2026-03-01"), -1) == D("2026-02-27")


def test_working_days_between():
    cal = Calendar()
    # Forward counts (a, b]. (Wed 1 Apr, Tue 7 Apr]: only Tue 7 works (Easter in between).
    assert cal.working_days_between(D("2026-04-01"), D("2026-04-07")) == 1
    # Backward counts [b, a) negatively: [Wed 1 Apr, Tue 7 Apr) holds only Wed 1.
    assert cal.working_days_between(D("2026-04-07"), D("2026-04-01")) == -1
    assert cal.working_days_between(D("2026-04-07"), D("2026-04-07")) == 0
    # (Fri 27 Feb, Fri 6 Mar] = Mon 2 .. Fri 6 = 5.
    assert cal.working_days_between(D("2026-02-27"), D("2026-03-06")) == 5
    # Saturday to Sunday: nothing.
    assert cal.working_days_between(D("2026-02-28"), D("2026-03-01")) == 0
    # Due Fri 27 Feb, looked at on Sat 28 Feb: already one working day overdue, not 0.
    assert cal.working_days_between(D("2026-02-28"), D("2026-02-27")) == -1
    # Due Mon 2 Mar, looked at on Sat 28 Feb: one working day left.
    assert cal.working_days_between(D("2026-02-28"), D("2026-03-02")) == 1


# ---------------------------------------------------------------------------------------------
# Clock setting while waiting for ID.


def test_clock_runs_from_receipt_by_default():
    received = datetime(2026, 2, 1, 9, 0, tzinfo=OSLO)
    verified = datetime(2026, 2, 10, 9, 0, tzinfo=OSLO)
    assert clock_start(received, None) == received
    assert clock_start(received, verified, "runs") == received
    assert case_deadlines(received) == compute_deadlines(received)


def test_clock_from_verification():
    received = datetime(2026, 2, 1, 9, 0, tzinfo=OSLO)
    verified = datetime(2026, 2, 10, 9, 0, tzinfo=OSLO)
    assert clock_start(received, None, ClockMode.FROM_VERIFICATION) is None
    assert case_deadlines(received, None, "from_verification") is None
    assert clock_start(received, verified, "from_verification") == verified
    # Verified Tue 10 Feb: +1 month = Tue 10 Mar; +30 days = Thu 12 Mar -> due 10 Mar.
    result = case_deadlines(received, verified, "from_verification")
    assert result is not None
    assert (result.received, result.due) == (D("2026-02-10"), D("2026-03-10"))
    # ID already on file before the request arrived: the clock cannot start before receipt.
    earlier = datetime(2026, 1, 5, 9, 0, tzinfo=OSLO)
    assert clock_start(received, earlier, "from_verification") == received
    with pytest.raises(ValueError):
        clock_start(received, verified, "paused")


def test_promise_days_validation():
    with pytest.raises(ValueError):
        compute_deadlines(D("2026-02-01"), promise_days=-1)
    with pytest.raises(TypeError):
        compute_deadlines(D("2026-02-01"), promise_days=30.0)  # type: ignore[arg-type]
    # promise_days=0: answer on the day of receipt, or the next working day (Sun 1 Feb -> Mon).
    assert compute_deadlines(D("2026-02-01"), promise_days=0).due == D("2026-02-02")


# ---------------------------------------------------------------------------------------------
# Properties over any receipt time 2026-2030.

ZONES = [
    UTC,
    OSLO,
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Tokyo"),
    ZoneInfo("Pacific/Kiritimati"),  # UTC+14
    ZoneInfo("Pacific/Pago_Pago"),  # UTC-11
    timezone(timedelta(hours=1)),
    timezone(timedelta(hours=-9, minutes=-30)),
]
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31, 23, 59), timezones=st.just(UTC)
)
receipts = st.one_of(
    st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2030, 12, 31, 23, 59),
        timezones=st.sampled_from(ZONES),
    ),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31, 23, 59)),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2030, 12, 31)),
)
days_2026_2030 = st.dates(min_value=date(2026, 1, 1), max_value=date(2030, 12, 31))
CAL = Calendar()


def _oslo_day(received: datetime | date) -> date:
    """Independent restatement of the receipt rule for the properties."""
    if isinstance(received, datetime):
        return received.astimezone(OSLO).date() if received.tzinfo else received.date()
    return received


def _is_open(day: date) -> bool:
    return day.weekday() < SAT and day not in norwegian_public_holidays(day.year)


def _assert_moved_forward(raw: date, moved: date) -> None:
    """moved is the first working day on or after raw."""
    assert moved >= raw
    assert _is_open(moved)
    day = raw
    while day < moved:
        assert not _is_open(day), (raw, moved, day)
        day += timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(received=receipts, promise_days=st.integers(min_value=0, max_value=90))
def test_properties_of_deadlines(received, promise_days):
    result = compute_deadlines(received, promise_days=promise_days)
    start = _oslo_day(received)
    assert result.received == start
    for day in (result.legal_due, result.promised_due, result.due, result.extended_due):
        assert _is_open(day)
    # Legal date: first working day on or after the clamped one-month date.
    raw_month = add_months(start, 1)
    assert raw_month.day == min(start.day, raw_month.day)
    assert (raw_month.year * 12 + raw_month.month) - (start.year * 12 + start.month) == 1
    _assert_moved_forward(raw_month, result.legal_due)
    _assert_moved_forward(start + timedelta(days=promise_days), result.promised_due)
    _assert_moved_forward(add_months(start, 3), result.extended_due)
    assert result.due == min(result.legal_due, result.promised_due)
    assert result.extension_notice_by == result.due
    assert result.extended_due > result.legal_due >= result.due >= result.received
    assert result.legal_due > result.received
    if promise_days > 0:
        assert result.due > result.received
    assert Deadlines.from_dict(result.as_dict()) == result


@settings(max_examples=100, deadline=None)
@given(instant=instants, zone_a=st.sampled_from(ZONES), zone_b=st.sampled_from(ZONES))
def test_same_instant_in_any_zone_gives_same_deadlines(instant, zone_a, zone_b):
    a = instant.astimezone(zone_a)
    b = instant.astimezone(zone_b)
    assert a == b
    assert compute_deadlines(a) == compute_deadlines(b)
    assert compute_deadlines(a) == compute_deadlines(instant.astimezone(OSLO).replace(tzinfo=None))


@settings(max_examples=100, deadline=None)
@given(day=days_2026_2030)
def test_next_working_day_property(day):
    _assert_moved_forward(day, CAL.next_working_day(day))
    assert CAL.is_working_day(day) == _is_open(day)


@settings(max_examples=100, deadline=None)
@given(day=days_2026_2030, n=st.integers(min_value=-60, max_value=60))
def test_add_working_days_property(day, n):
    target = CAL.add_working_days(day, n)
    if n == 0:
        assert target == day
        return
    assert _is_open(target)
    assert (target > day) == (n > 0)
    # Counted by hand: n open days in (day, target] forward, -n open days in [target, day)
    # backward (day itself is never counted, target always is).
    if n > 0:
        span = [day + timedelta(days=i) for i in range(1, (target - day).days + 1)]
    else:
        span = [target + timedelta(days=i) for i in range((day - target).days)]
    assert sum(map(_is_open, span)) == abs(n)
    assert CAL.working_days_between(day, target) == n


@settings(max_examples=100, deadline=None)
@given(a=days_2026_2030, b=days_2026_2030)
def test_working_days_between_property(a, b):
    between = CAL.working_days_between(a, b)
    if a <= b:  # open days in (a, b]
        span = [a + timedelta(days=i) for i in range(1, (b - a).days + 1)]
        assert between == sum(map(_is_open, span))
    else:  # minus open days in [b, a)
        span = [b + timedelta(days=i) for i in range((a - b).days)]
        assert between == -sum(map(_is_open, span))
    if _is_open(b):
        assert CAL.add_working_days(a, between) == b
    if _is_open(a) and _is_open(b):
        assert CAL.working_days_between(b, a) == -between


@settings(max_examples=100, deadline=None)
@given(day=st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)),
       months=st.integers(min_value=-36, max_value=36))
def test_add_months_property(day, months):
    result = add_months(day, months)
    assert (result.year * 12 + result.month) - (day.year * 12 + day.month) == months
    if result.day != day.day:  # clamped: only to the last day of a shorter month
        assert result.day < day.day
        assert (result + timedelta(days=1)).day == 1
