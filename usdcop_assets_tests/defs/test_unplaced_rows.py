"""Rows an import can place in no session partition are visible where users look, not only in a lake object."""

import sqlite3

import pandas as pd
from click.testing import CliRunner

from usdcop_assets.cli import main


def _bars_with_a_weekend(path):
    session = pd.date_range("2025-03-07 13:00", periods=6, freq="5min", tz="UTC")  # Friday 08:00-08:25 Bogota
    saturday = pd.date_range("2025-03-08 14:00", periods=3, freq="5min", tz="UTC")
    times = session.append(saturday)
    frame = pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%d %H:%M:%S+00:00"),
            "symbol": "USD/COP",
            "open": 4100.0,
            "high": 4101.0,
            "low": 4099.0,
            "close": 4100.5,
            "volume": 0,
            "source": "twelvedata",
        }
    )
    frame.to_csv(path, index=False)
    return saturday


def test_weekend_rows_of_an_import_are_listed_beside_the_rejects_and_survive_a_reimport(usdcop_env, tmp_path):
    csv = tmp_path / "bars.csv"
    saturday = _bars_with_a_weekend(csv)
    for _ in range(2):  # the second import must change nothing
        result = CliRunner().invoke(
            main, ["import", str(csv), "--kind", "bars", "--layers", "L0,L1"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert "3 of them are listed in the warehouse's ohlcv_m5_unplaced (not_a_trading_day)" in result.output
    with sqlite3.connect(usdcop_env / "warehouse.sqlite") as conn:
        rows = conn.execute("SELECT time, reason, detail FROM ohlcv_m5_unplaced ORDER BY time").fetchall()
    assert [pd.Timestamp(r[0]) for r in rows] == list(saturday)
    assert {r[1] for r in rows} == {"not_a_trading_day"}
    assert "line 8 of the file" in rows[0][2] and "l0/ohlcv_m5_unplaced/bars" in rows[0][2]

    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "streamlit_app"))
    import data  # the dashboard's read layer

    rejects = data.rejects(data.sources())
    assert data.rejects_by_reason(rejects).set_index("reason")["rows"].to_dict().get("not_a_trading_day") == 3
