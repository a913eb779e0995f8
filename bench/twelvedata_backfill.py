#!/usr/bin/env python
"""A six-year backfill of ``l0/ohlcv_m5`` from a loopback TwelveData with the free-plan limits simulated.

The parent process starts ``usdcop_assets.testing.vendor_server.VendorServer`` on 127.0.0.1, serving
every calendar bar 2020-01-01 .. 2025-12-31 (``synthetic_bars`` over ``market_calendar.expected_bars``)
the way TwelveData does (newest first, string numbers, ``outputsize`` capped at 5000, local
``America/Bogota`` datetimes; any other ``timezone`` is refused). A subclass adds what the test server
leaves to the tests: a per-key, per-UTC-minute credit limit (``--per-minute``, default 8; the 9th request
of a key in a minute gets TwelveData's ``code 429 ... for the current minute`` body) and the daily credits
(``--per-day``, default 800, enforced by the base server's ``daily_credits``).

``TWELVEDATA_API_KEYS`` is set to ``--keys`` (default 8) fake keys and ``TWELVEDATA_BASE_URL`` to the
server; keys are only ever named by position. Then:

1. the client alone, in a child interpreter: ``TwelveDataClient.from_env().fetch_bars(start, end)`` over
   the six years: requests (client and server side, per key position), minimum requests that
   ``outputsize`` allows, wall time, bars/s, time spent waiting for minute credit, 429s, peak RSS of the
   child (``wait4``), and a data check against the bars served;
2. the same through Dagster: ``usdcop backfill --layers L0`` over the last ``--sessions N`` sessions of
   2025 (``--full``: all six years) in a child with a fresh temporary ``USDCOP_HOME`` (embedded SQLite
   instance unless ``--dagster-yaml``), its wall time split from the run records, and an extrapolation
   to six years from ms/bar.

``--keys 1`` makes the minute limit the binding constraint: ~18 requests at 8/minute need two full
minute waits, so the client's wall time is then dominated by the rate limit.

    .venv/bin/python bench/twelvedata_backfill.py                      # 8 keys, client x2 + Dagster 60 sessions
    .venv/bin/python bench/twelvedata_backfill.py --keys 1 --skip-dagster
    .venv/bin/python bench/twelvedata_backfill.py --sessions 120 --dagster-env DAGSTER_EVENT_BATCH_SIZE=100000
    .venv/bin/python bench/twelvedata_backfill.py --full                # six years through Dagster (slow on SQLite)

Timings are wall-clock on whatever machine runs this (a shared 2-core box in the notes): noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FIRST_DAY = dt.date(2020, 1, 1)
LAST_DAY = dt.date(2025, 12, 31)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def six_year_window():
    """[00:00 Bogota of FIRST_DAY, 00:00 Bogota of the day after LAST_DAY) as UTC timestamps."""
    import pandas as pd

    from usdcop_assets.core import calendar as cal

    start = pd.Timestamp(dt.datetime.combine(FIRST_DAY, dt.time(0), tzinfo=cal.TZ)).tz_convert("UTC")
    end = pd.Timestamp(dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(0), tzinfo=cal.TZ)).tz_convert(
        "UTC"
    )
    return start, end


# --- the server --------------------------------------------------------------------------------------


def make_server(per_minute: int, per_day: int, keys: list[str]):
    from usdcop_assets.testing.vendor_server import OUT_OF_MINUTE, TD_PATH, VendorServer

    @dataclass
    class FreePlanServer(VendorServer):
        """VendorServer + a per-key credit limit per UTC minute (TwelveData's free plan: 8)."""

        per_minute: int = 8
        refused_minute: Counter = field(default_factory=Counter)
        served_values: int = 0

        def __post_init__(self) -> None:
            super().__post_init__()
            self._minute_used: Counter = Counter()

        def _time_series(self, p):
            key = p.get("apikey")
            if key:
                minute = int(time.time() // 60)  # UTC minute, like the vendor's (and the client's) counters
                with self._lock:
                    self._minute_used[(key, minute)] += 1
                    over = self._minute_used[(key, minute)] > self.per_minute
                    if over:
                        self.refused_minute[key] += 1
                if over:
                    return 200, OUT_OF_MINUTE
            status, payload = super()._time_series(p)
            with self._lock:
                self.served_values += len(payload.get("values") or ())
            return status, payload

        def td_requests(self) -> list:
            return self.paths(TD_PATH)

    server = FreePlanServer(per_minute=per_minute)
    server.daily_credits = {k: per_day for k in keys}
    return server


def load_bars(server) -> int:
    from usdcop_assets.core import calendar as cal
    from usdcop_assets.sources.synthetic import synthetic_bars

    start, end = six_year_window()
    bars = synthetic_bars(cal.expected_bars(start, end))
    server.set_bars(bars)
    return len(bars)


# --- children ----------------------------------------------------------------------------------------


def client_child() -> None:
    """Runs in a child interpreter with TWELVEDATA_* set: one six-year fetch, JSON on stdout."""
    t_proc = time.perf_counter()
    from usdcop_assets.sources.twelvedata import TwelveDataClient, min_requests

    t_import = time.perf_counter() - t_proc
    start, end = six_year_window()
    t0 = time.perf_counter()
    with TwelveDataClient.from_env() as client:
        frame = client.fetch_bars(start, end)
        summary = client.summary()
    wall = time.perf_counter() - t0
    from usdcop_assets.core import calendar as cal

    expected = cal.expected_bars(start, end)
    times = frame["time"]
    out = {
        "import_s": t_import,
        "wall_s": wall,
        "bars": int(len(frame)),
        "expected_bars": int(len(expected)),
        "missing_bars": int(len(expected.difference(pd_index(times)))),
        "duplicate_times": int(times.duplicated().sum()),
        "parse_errors": int(frame["parse_error"].notna().sum()),
        "ascending": bool(times.is_monotonic_increasing),
        "min_requests": min_requests(len(expected)),
        **summary,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


def pd_index(times):
    import pandas as pd

    return pd.DatetimeIndex(times)


def spawn(cmd: list[str], env: dict, cwd: Path, stdout_path: Path, stderr_path: Path) -> tuple[int, float, float]:
    """Run ``cmd``; return (exit code, wall seconds, peak RSS MB of that child, from wait4)."""
    t0 = time.perf_counter()
    with open(stdout_path, "w") as fo, open(stderr_path, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024


def base_env(server, keys: list[str], args, home: Path | None = None) -> dict:
    from dagster_overhead import child_env

    env = child_env(home or Path(tempfile.gettempdir()) / "unused_usdcop_home")
    env.update(
        {
            "USDCOP_SOURCE": "twelvedata",
            "TWELVEDATA_API_KEYS": ",".join(keys),
            "TWELVEDATA_BASE_URL": server.url,
            "TWELVEDATA_CREDITS_PER_MINUTE": str(args.per_minute),
            "TWELVEDATA_CREDITS_PER_DAY": str(args.per_day),
        }
    )
    return env


def server_counts(server, keys: list[str], since: int) -> dict:
    reqs = server.td_requests()[since:]
    by_key = Counter(r.key for r in reqs)
    pos = {k: i + 1 for i, k in enumerate(keys)}
    return {
        "requests": len(reqs),
        "per_key": {
            f"key #{pos[k]}": n for k, n in sorted(by_key.items(), key=lambda kv: pos.get(kv[0], 0)) if k in pos
        },
        "span_s": (reqs[-1].at - reqs[0].at) if reqs else 0.0,
    }


def run_client(server, keys, args, workdir: Path) -> dict:
    since = len(server.td_requests())
    refused0 = sum(server.refused_minute.values())
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client-child"]
    rc, wall, rss = spawn(cmd, base_env(server, keys, args), PROJECT, workdir / "client.out", workdir / "client.err")
    if rc != 0:
        return {"rc": rc, "stderr_tail": (workdir / "client.err").read_text()[-3000:]}
    res = json.loads((workdir / "client.out").read_text().strip().splitlines()[-1])
    res.update(
        rc=0,
        proc_wall_s=wall,
        maxrss_mb=rss,
        server=server_counts(server, keys, since),
        refused_minute=sum(server.refused_minute.values()) - refused0,
    )
    return res


def session_days(n: int | None) -> list[dt.date]:
    from usdcop_assets.core import calendar as cal

    days = cal.trading_days(FIRST_DAY, LAST_DAY)
    return days if n is None else days[-n:]


def run_dagster(server, keys, args, workdir: Path) -> dict:
    from dagster_overhead import run_segments, usdcop_cmd

    days = session_days(None if args.full else args.sessions)
    home = workdir / "home"
    env = base_env(server, keys, args, home)
    env.update(dict(kv.split("=", 1) for kv in args.dagster_env))
    if args.dagster_yaml:
        (home / "dagster_home").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.dagster_yaml, home / "dagster_home" / "dagster.yaml")
    since = len(server.td_requests())
    cli_args = ["backfill", "--layers", "L0", "--start", days[0].isoformat(), "--end", days[-1].isoformat()]
    cmd = [*usdcop_cmd(), *cli_args]
    t_start = time.time()
    rc, wall, rss = spawn(cmd, env, workdir, workdir / "dagster.out", workdir / "dagster.err")
    res = {
        "rc": rc,
        "wall_s": wall,
        "maxrss_mb": rss,
        "sessions": len(days),
        "bars": len(days) * 60,
        "first": days[0].isoformat(),
        "last": days[-1].isoformat(),
        "cmd": "usdcop " + " ".join(cli_args),
        "stdout": (workdir / "dagster.out").read_text().strip(),
        "server": server_counts(server, keys, since),
    }
    if rc != 0:
        res["stderr_tail"] = (workdir / "dagster.err").read_text()[-3000:]
        return res
    runs, seg = run_segments(home / "dagster_home", t_start, t_start + wall)
    res["segments"] = seg
    res["events"] = {k: v["events"] for k, v in runs.items()}
    return res


# --- main --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=8, help="number of fake API keys (default 8)")
    ap.add_argument(
        "--per-minute", type=int, default=8, help="credits per key per UTC minute, enforced by the server (default 8)"
    )
    ap.add_argument(
        "--per-day", type=int, default=800, help="credits per key per day, enforced by the server (default 800)"
    )
    ap.add_argument(
        "--client-repeats", type=int, default=None, help="client runs, best reported (default 2, 1 when --keys < 3)"
    )
    ap.add_argument(
        "--sessions",
        type=int,
        default=60,
        help="sessions for the Dagster part, the last ones of 2025 (default 60 = 3,600 bars)",
    )
    ap.add_argument("--full", action="store_true", help="the Dagster part over all six years")
    ap.add_argument("--skip-client", action="store_true")
    ap.add_argument("--skip-dagster", action="store_true")
    ap.add_argument(
        "--dagster-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment for the usdcop child (repeatable)",
    )
    ap.add_argument(
        "--dagster-yaml", help="instance config to copy into the child's DAGSTER_HOME (e.g. a dagster-postgres one)"
    )
    ap.add_argument("--client-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client_child:
        client_child()
        return 0

    t_all = time.perf_counter()
    keys = [f"bench{i + 1:02d}{secrets.token_hex(8)}" for i in range(args.keys)]  # fake; never printed
    server = make_server(args.per_minute, args.per_day, keys)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="usdcop_bench_td_"))
    try:
        t0 = time.perf_counter()
        n_bars = load_bars(server)
        from usdcop_assets.sources.twelvedata import MAX_OUTPUTSIZE, min_requests

        log(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared: timings are noisy)")
        log(
            f"loopback TwelveData at 127.0.0.1 serving {n_bars:,} bars {FIRST_DAY} .. {LAST_DAY} (built in "
            f"{time.perf_counter() - t0:.1f}s); "
            f"{args.keys} key(s), {args.per_minute}/minute and {args.per_day}/day per key enforced by the server; "
            f"outputsize cap {MAX_OUTPUTSIZE} -> minimum {min_requests(n_bars)} requests for six years"
        )
        log()
        clients = []
        if not args.skip_client:
            reps = args.client_repeats or (2 if args.keys >= 3 else 1)
            for i in range(reps):
                wd = tmp / f"client_{i}"
                wd.mkdir()
                r = run_client(server, keys, args, wd)
                if r["rc"] != 0:
                    log(f"client run {i + 1} FAILED (rc={r['rc']}):\n{r.get('stderr_tail', '')}")
                    continue
                clients.append(r)
                log(
                    f"client run {i + 1}/{reps}: {r['wall_s']:.2f}s fetch wall, {r['requests']} requests, waited "
                    f"{r['rate_limit_wait_seconds']:.1f}s for minute credit"
                )
            if clients:
                report_client(clients, args)
        dag = None
        if not args.skip_dagster:
            wd = tmp / "dagster"
            wd.mkdir()
            days = session_days(None if args.full else args.sessions)
            log()
            log(f"usdcop backfill --layers L0 over {len(days)} sessions ({len(days) * 60:,} bars) ...")
            dag = run_dagster(server, keys, args, wd)
            report_dagster(dag, clients, n_bars, args)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"\ntotal bench time {time.perf_counter() - t_all:.0f}s")
    return 0


def report_client(clients: list[dict], args) -> None:
    best = min(clients, key=lambda r: r["wall_s"])
    log()
    log(
        f"=== (1) TwelveDataClient.fetch_bars over six years, {args.keys} key(s) at {args.per_minute}/min, "
        f"{args.per_day}/day "
        f"(best of {len(clients)} by wall) ==="
    )
    rows = [
        (
            "bars returned / expected",
            f"{best['bars']:,} / {best['expected_bars']:,} (missing {best['missing_bars']}, duplicate times "
            f"{best['duplicate_times']}, parse errors {best['parse_errors']})",
        ),
        (
            "requests (client / server)",
            f"{best['requests']} / {best['server']['requests']}   minimum ceil(bars/5000) = {best['min_requests']}",
        ),
        ("pages", f"{best['pages']}"),
        ("requests per key (server)", ", ".join(f"{k}: {v}" for k, v in best["server"]["per_key"].items())),
        ("429 'current minute' refusals", f"{best['refused_minute']}"),
        (
            "fetch wall",
            f"{best['wall_s']:.2f}s   (child process {best['proc_wall_s']:.2f}s incl. {best['import_s']:.1f}s imports)",
        ),
        (
            "waiting for minute credit",
            f"{best['rate_limit_wait_seconds']:.2f}s = {100 * best['rate_limit_wait_seconds'] / best['wall_s']:.0f}% "
            "of the fetch wall",
        ),
        ("work (wall - waiting)", f"{best['wall_s'] - best['rate_limit_wait_seconds']:.2f}s"),
        (
            "bars/s",
            f"{best['bars'] / best['wall_s']:,.0f} (excluding waiting: "
            f"{best['bars'] / max(best['wall_s'] - best['rate_limit_wait_seconds'], 1e-9):,.0f})",
        ),
        ("peak RSS of the client process", f"{best['maxrss_mb']:.0f} MB"),
    ]
    for k, v in rows:
        log(f"  {k:32} {v}")
    if len(clients) > 1:
        walls = ", ".join("{:.2f}s".format(r["wall_s"]) for r in clients)
        log(f"  all runs' fetch wall: {walls}")


def report_dagster(dag: dict, clients: list[dict], n_bars: int, args) -> None:
    from dagster_overhead import fmt_hms

    log()
    log(f"=== (2) {dag['cmd']} (fresh temporary USDCOP_HOME) ===")
    if args.dagster_env or args.dagster_yaml:
        log(
            f"  child environment extras: {args.dagster_env or '-'}; instance config: "
            f"{args.dagster_yaml or 'embedded SQLite (dagster.yaml)'}"
        )
    for line in dag["stdout"].splitlines():
        log(f"    | {line}")
    if dag["rc"] != 0:
        log(f"  FAILED (rc={dag['rc']}):\n{dag.get('stderr_tail', '')}")
        return
    seg = dag.get("segments", {})
    bars = dag["bars"]
    log(f"  {'sessions / bars':32} {dag['sessions']} / {bars:,} ({dag['first']} .. {dag['last']})")
    log(
        f"  {'requests (server)':32} {dag['server']['requests']}   per key: "
        f"{', '.join(f'{k}: {v}' for k, v in dag['server']['per_key'].items()) or '-'}"
    )
    log(
        f"  {'wall (whole CLI)':32} {dag['wall_s']:.1f}s = {1000 * dag['wall_s'] / bars:.2f} ms/bar, "
        f"{bars / dag['wall_s']:,.0f} bars/s"
    )
    log(f"  {'split':32} " + ", ".join(f"{k} {v:.1f}s" for k, v in seg.items()))
    log(f"  {'peak RSS of the usdcop process':32} {dag['maxrss_mb']:.0f} MB")
    ev = dag["events"].get("session_chain", {})
    log(
        f"  {'session_chain events':32} {sum(ev.values())} ({ev.get('ASSET_MATERIALIZATION', 0)} ASSET_MATERIALIZATION)"
    )
    if "m5 execute" in seg:
        per_bar = seg["m5 execute"] / bars
        checks_per_session = seg.get("checks run", 0.0) / dag["sessions"]
        fixed = seg.get("startup", 0.0) + seg.get("run create", 0.0) + seg.get("exit", 0.0)
        sessions_6y = n_bars // 60
        fetch_6y = min(clients, key=lambda r: r["wall_s"])["wall_s"] if clients else 0.0
        est = fixed + per_bar * n_bars + checks_per_session * sessions_6y + fetch_6y
        log()
        log(f"  extrapolation to six years ({n_bars:,} bars, {sessions_6y:,} sessions), linear in bars:")
        log(f"    fixed (startup + run create + exit)      {fixed:8.1f}s")
        log(f"    m5 execute  {1000 * per_bar:6.2f} ms/bar x {n_bars:,}   {per_bar * n_bars:8.0f}s")
        log(
            f"    checks run  {checks_per_session:6.2f} s/session x {sessions_6y:,}  "
            f"{checks_per_session * sessions_6y:8.0f}s"
        )
        log(f"    + the six-year fetch (client part, rate limit included)  {fetch_6y:8.1f}s")
        waited = min(clients, key=lambda r: r["wall_s"])["rate_limit_wait_seconds"] if clients else 0.0
        log(f"    = about {est:.0f}s ({fmt_hms(est)}); waiting for the rate limit is {100 * waited / est:.1f}% of it")
        log("    (assumes the per-event cost of the SQLite event log stays flat as it grows, and that the platform's")
        log("    per-bar cost is the same whether the bars came from one request or eighteen)")


if __name__ == "__main__":
    sys.exit(main())
