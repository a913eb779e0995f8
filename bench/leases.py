"""Cost of the writer leases (usdcop_assets/storage/lake/lease.py) that every session/macro-day output write takes.

Per store (a local directory; moto's S3 server on loopback, the stand-in for MinIO/S3): the time of one
uncontended acquire + release (what a realtime run's output write adds), with ``--entries`` released or
expired entries of other writers lying in the registry (the highest one is always kept, the rest are
collected by the next acquire), and of one session object write (``SessionTable.write`` of 60 bars) for
scale. Prints figures only.

    .venv/bin/python bench/leases.py [--repeats 200] [--entries 0]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usdcop_assets.core import calendar as cal  # noqa: E402
from usdcop_assets.sources.synthetic import synthetic_bars  # noqa: E402
from usdcop_assets.storage.lake.lease import SessionLeases  # noqa: E402
from usdcop_assets.storage.lake.session_table import SessionTable  # noqa: E402
from usdcop_assets.storage.lake.store import LocalObjectStore, S3ObjectStore  # noqa: E402


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s) * 1e3:.2f} ms, p95 {s[int(0.95 * (len(s) - 1))] * 1e3:.2f} ms"


def bench(name: str, store, repeats: int, entries: int) -> None:
    leases = SessionLeases(store)
    for i in range(entries):  # other writers' finished entries
        leases.acquire(f"2020-01-{1 + i % 28:02d}", f"2020-01-{1 + i % 28:02d}", "old", wait=0).release()
    cycle = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        leases.acquire("2025-03-05", "2025-03-05", "bench", wait=0).release()
        cycle.append(time.perf_counter() - t0)
    day = cal.parse_session_key("2025-03-05")
    bars = synthetic_bars(cal.session_bars(day))
    table = SessionTable(store, "bench/ohlcv_m5")
    writes = []
    for i in range(max(5, repeats // 10)):
        frame = bars.assign(close=bars["close"] + i)  # a new object each time
        t0 = time.perf_counter()
        table.write(frame, cal.session_open(day), cal.session_end(day))
        writes.append(time.perf_counter() - t0)
    print(f"{name:6} lease acquire+release: {_ms(cycle)} ({repeats} cycles); one session object write: {_ms(writes)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--entries", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("local", LocalObjectStore(Path(tmp) / "lake"), args.repeats, args.entries)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import boto3

        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        bench("s3", S3ObjectStore(bucket, "lake", client=client), args.repeats, args.entries)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
