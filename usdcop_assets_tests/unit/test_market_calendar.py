import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal

BOGOTA = ZoneInfo("America/Bogota")


# Colombia's 2025 public holidays as published (Ley Emiliani moves most to the next Monday): a referee
# independent of the holidays package the calendar reads. 20 July falls on a Sunday.
HOLIDAYS_2025 = [
    dt.date(2025, 1, 1),
    dt.date(2025, 1, 6),
    dt.date(2025, 3, 24),
    dt.date(2025, 4, 17),
    dt.date(2025, 4, 18),
    dt.date(2025, 5, 1),
    dt.date(2025, 6, 2),
    dt.date(2025, 6, 23),
    dt.date(2025, 6, 30),
    dt.date(2025, 7, 20),
    dt.date(2025, 8, 7),
    dt.date(2025, 8, 18),
    dt.date(2025, 10, 13),
    dt.date(2025, 11, 3),
    dt.date(2025, 11, 17),
    dt.date(2025, 12, 8),
    dt.date(2025, 12, 25),
]


def test_2025_holidays_and_sessions_match_the_published_list():
    assert cal.colombian_holidays(2025, 2025) == HOLIDAYS_2025
    year = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    sessions = [d for d in year if d.weekday() < 5 and d not in HOLIDAYS_2025]
    assert cal.trading_days(dt.date(2025, 1, 1), dt.date(2025, 12, 31)) == sessions
    assert len(sessions) == 245  # 261 weekdays, 16 of them holidays


def test_no_bars_on_any_holiday_2020_2026():
    for day in cal.colombian_holidays(2020, 2026):
        assert not cal.is_trading_day(day)
        with pytest.raises(cal.CalendarError, match=day.isoformat()):
            cal.session_bars(day)
        assert len(cal.expected_bars(cal.session_open(day) - pd.Timedelta(hours=1), cal.session_end(day))) == 0


def test_every_session_has_sixty_bars_from_0800_to_1255_bogota():
    for day in cal.trading_days(dt.date(2020, 1, 1), dt.date(2026, 12, 31)):
        bars = cal.session_bars(day)
        assert len(bars) == 60
    local = cal.session_bars(dt.date(2025, 3, 4)).tz_convert(BOGOTA)
    assert local[0].strftime("%H:%M") == "08:00" and local[-1].strftime("%H:%M") == "12:55"
    assert (np.diff(local.asi8) == 5 * 60 * 10**9).all()


def test_bogota_has_no_dst_so_0800_is_always_1300_utc():
    # bars_of_days and the lake's day split rely on this; zoneinfo is the referee.
    for day in pd.date_range("2020-01-01", "2026-12-31", freq="7D"):
        open_local = dt.datetime.combine(day.date(), dt.time(8), tzinfo=BOGOTA)
        assert open_local.utcoffset() == dt.timedelta(hours=-5)


def test_weekends_are_not_trading_days():
    assert not cal.is_trading_day(dt.date(2025, 3, 8))  # Saturday
    assert not cal.is_trading_day(dt.date(2025, 3, 9))  # Sunday
    assert cal.is_trading_day(dt.date(2025, 3, 10))


def test_expected_bars_between_two_instants_skips_nights_weekends_and_holidays():
    # Friday 12:50 Bogota to Tuesday 08:10 across a holiday Monday (2025-01-06)
    start = pd.Timestamp("2025-01-03 12:50", tz=BOGOTA)
    end = pd.Timestamp("2025-01-07 08:10", tz=BOGOTA)
    bars = cal.expected_bars(start, end).tz_convert(BOGOTA)
    assert [b.strftime("%Y-%m-%d %H:%M") for b in bars] == [
        "2025-01-03 12:50",
        "2025-01-03 12:55",
        "2025-01-07 08:00",
        "2025-01-07 08:05",
    ]
    with pytest.raises(cal.CalendarError, match="timezone"):
        cal.expected_bars(pd.Timestamp("2025-01-03 12:50"), end)


def test_session_of_and_time_in_session():
    assert cal.session_of(pd.Timestamp("2025-03-04 08:00", tz=BOGOTA)) == dt.date(2025, 3, 4)
    assert cal.session_of(pd.Timestamp("2025-03-04 12:55", tz=BOGOTA)) == dt.date(2025, 3, 4)
    assert cal.session_of(pd.Timestamp("2025-03-04 13:00", tz=BOGOTA)) is None
    assert cal.session_of(pd.Timestamp("2025-03-04 07:55", tz=BOGOTA)) is None
    assert cal.session_of(pd.Timestamp("2025-03-04 08:02", tz=BOGOTA)) is None  # off the 5-minute grid
    assert cal.session_of(pd.Timestamp("2025-01-06 09:00", tz=BOGOTA)) is None  # holiday
    frac = cal.time_in_session(
        pd.DatetimeIndex(["2025-03-04 08:00", "2025-03-04 10:30", "2025-03-04 12:55", "2025-03-04 13:00"]).tz_localize(
            BOGOTA
        )
    )
    assert frac[0] == 0.0 and frac[1] == pytest.approx(0.5) and frac[2] == pytest.approx(59 / 60)
    assert np.isnan(frac[3])


def test_partition_keys_round_trip_and_reject_keys_off_the_calendar():
    ts = pd.Timestamp("2025-03-04 12:55", tz=BOGOTA)
    assert cal.bar_key(ts) == "2025-03-04-12:55"
    assert cal.parse_bar_key("2025-03-04-12:55") == ts.tz_convert("UTC")
    for bad in ("2025-03-04-13:00", "2025-01-06-09:00", "2025-03-08-09:00", "2025-03-04-08:02"):
        with pytest.raises(cal.CalendarError, match=bad):
            cal.parse_bar_key(bad)
    with pytest.raises(cal.CalendarError, match="YYYY-MM-DD-HH:MM"):
        cal.parse_bar_key("yesterday")
    with pytest.raises(cal.CalendarError, match="2025-01-06"):
        cal.parse_session_key("2025-01-06")
    assert cal.parse_session_key("2025-03-04") == dt.date(2025, 3, 4)


def test_last_closed_bar():
    # 10:07 -> the 10:00 bar closed at 10:05; the 10:05 bar is still open
    assert cal.bar_key(cal.last_closed_bar(pd.Timestamp("2025-03-04 10:07", tz=BOGOTA))) == "2025-03-04-10:00"
    # Monday before the open -> Friday's 12:55
    assert cal.bar_key(cal.last_closed_bar(pd.Timestamp("2025-03-10 07:00", tz=BOGOTA))) == "2025-03-07-12:55"
    # Tuesday after a holiday Monday, before the open -> Friday
    assert cal.bar_key(cal.last_closed_bar(pd.Timestamp("2025-01-07 07:59", tz=BOGOTA))) == "2025-01-03-12:55"
