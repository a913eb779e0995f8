"""A real HTTP server on 127.0.0.1 playing TwelveData's ``/time_series`` and FRED's
``/fred/series/observations``, for the source-client tests.

Each test programs it:

- ``script(...)`` queues scripted responses (status, JSON or raw body, delay), optionally only for a
  path and/or an API key; the first matching entry is consumed by each request.
- Unscripted requests get a data-backed default: ``set_bars(frame)`` (TwelveData; values served newest
  first as strings, honouring ``start_date``/``end_date``/``outputsize``/``timezone`` = America/Bogota)
  and ``set_fred_series(series_id, [(date, value), ...])``. Optional ``daily_credits`` per key makes
  TwelveData answer its "out of API credits for the day" error once a key has used them.

Every request is recorded (path, query parameters, Authorization header) in ``requests``. TwelveData's
key is taken from the ``Authorization: apikey <key>`` header (as the client sends it) or, like the real
service, from an ``apikey`` query parameter.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd

TD_PATH = "/time_series"
FRED_PATH = "/fred/series/observations"
BOGOTA = "America/Bogota"
NO_DATA = {
    "code": 400,
    "message": "No data is available on the specified dates. Try setting different start/end dates.",
    "status": "error",
}
OUT_OF_DAY = {
    "code": 429,
    "message": "You have run out of API credits for the day. Wait for the next day or consider switching to a higher "
    "tier plan.",
    "status": "error",
}
OUT_OF_MINUTE = {
    "code": 429,
    "message": "You have run out of API credits for the current minute. 9 API credits were used, with the current "
    "limit being 8.",
    "status": "error",
}


@dataclass
class Recorded:
    path: str
    params: dict[str, str]
    at: float
    authorization: str | None = None

    @property
    def header_key(self) -> str | None:
        scheme, _, value = (self.authorization or "").partition(" ")
        return value.strip() or None if scheme.lower() == "apikey" else None

    @property
    def key(self) -> str | None:
        return self.header_key or self.params.get("apikey") or self.params.get("api_key")


@dataclass
class Scripted:
    status: int = 200
    json_body: object = None
    body: str | None = None
    delay: float = 0.0
    path: str | None = None
    key: str | None = None
    content_type: str | None = None

    def matches(self, path: str, key: str | None) -> bool:
        return (self.path is None or path == self.path) and (self.key is None or key == self.key)


@dataclass
class VendorServer:
    requests: list[Recorded] = field(default_factory=list)
    daily_credits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Scripted] = []
        self._td_times: list[str] = []  # Bogota-local "YYYY-MM-DD HH:MM:SS", ascending
        self._td_values: list[dict] = []
        self._fred: dict[str, list[tuple[str, str]]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> VendorServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def do_GET(self):  # noqa: N802
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> VendorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # programming
    def script(
        self,
        status: int = 200,
        json_body=None,
        *,
        body: str | None = None,
        delay: float = 0.0,
        path: str | None = None,
        key: str | None = None,
        times: int = 1,
        content_type: str | None = None,
    ) -> None:
        with self._lock:
            for _ in range(times):
                self._script.append(Scripted(status, json_body, body, delay, path, key, content_type))

    def set_bars(self, frame: pd.DataFrame) -> None:
        """Serve ``frame`` (time tz-aware, open/high/low/close/volume) as TwelveData values."""
        local = pd.DatetimeIndex(frame["time"]).tz_convert(BOGOTA).strftime("%Y-%m-%d %H:%M:%S")
        rows = []
        for t, o, h, lo, c, v in zip(
            local, frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"]
        ):
            rows.append(
                {
                    "datetime": t,
                    "open": repr(float(o)),
                    "high": repr(float(h)),
                    "low": repr(float(lo)),
                    "close": repr(float(c)),
                    "volume": str(int(v)),
                }
            )
        order = sorted(range(len(rows)), key=lambda i: rows[i]["datetime"])
        with self._lock:
            self._td_values = [rows[i] for i in order]
            self._td_times = [r["datetime"] for r in self._td_values]

    def set_fred_series(self, series_id: str, observations) -> None:
        with self._lock:
            self._fred[series_id] = sorted((str(d), str(v)) for d, v in observations)

    # inspection
    def paths(self, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if path is None or r.path == path]

    def keys_used(self) -> list[str | None]:
        return [r.key for r in self.requests]

    def count_by_key(self) -> Counter:
        return Counter(self.keys_used())

    # serving
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        rec = Recorded(parts.path, params, time.monotonic(), h.headers.get("Authorization"))
        with self._lock:
            self.requests.append(rec)
            scripted = next((s for s in self._script if s.matches(parts.path, rec.key)), None)
            if scripted is not None:
                self._script.remove(scripted)
        if scripted is not None:
            if scripted.delay:
                time.sleep(scripted.delay)
            if scripted.body is not None:
                self._send(h, scripted.status, scripted.body, scripted.content_type or "text/html")
            else:
                self._send(
                    h, scripted.status, json.dumps(scripted.json_body), scripted.content_type or "application/json"
                )
            return
        if parts.path == TD_PATH:
            status, payload = self._time_series({**params, "apikey": rec.key} if rec.key else params)
        elif parts.path == FRED_PATH:
            status, payload = self._fred_observations(params)
        else:
            status, payload = 404, {"status": "error", "code": 404, "message": f"no route {parts.path}"}
        self._send(h, status, json.dumps(payload), "application/json")

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _time_series(self, p: dict[str, str]) -> tuple[int, dict]:
        key = p.get("apikey")
        if not key:
            return 200, {
                "code": 401,
                "message": "**apikey** parameter is incorrect or not specified.",
                "status": "error",
            }
        with self._lock:
            if key in self.daily_credits:
                if self.daily_credits[key] <= 0:
                    return 200, OUT_OF_DAY
                self.daily_credits[key] -= 1
            times, values = self._td_times, self._td_values
        if p.get("timezone") != BOGOTA:
            return 200, {"code": 400, "message": "this fake only serves timezone=America/Bogota", "status": "error"}
        size = min(int(p.get("outputsize", "30")), 5000)
        lo = bisect.bisect_left(times, p.get("start_date", "0000"))
        hi = bisect.bisect_right(times, p.get("end_date", "9999"))
        chosen = values[max(lo, hi - size) : hi][::-1]  # newest first
        if not chosen:
            return 200, NO_DATA
        meta = {
            "symbol": p.get("symbol"),
            "interval": p.get("interval"),
            "currency_base": "US Dollar",
            "currency_quote": "Colombian Peso",
            "exchange_timezone": "UTC",
            "type": "Physical Currency",
        }
        return 200, {"meta": meta, "values": chosen, "status": "ok"}

    def _fred_observations(self, p: dict[str, str]) -> tuple[int, dict]:
        if not p.get("api_key"):
            return 400, {"error_code": 400, "error_message": "Bad Request.  Variable api_key is not set."}
        sid = p.get("series_id", "")
        with self._lock:
            obs = self._fred.get(sid)
        if obs is None:
            return 400, {"error_code": 400, "error_message": "Bad Request.  The series does not exist."}
        start, end = p.get("observation_start", "0000-00-00"), p.get("observation_end", "9999-12-31")
        picked = [(d, v) for d, v in obs if start <= d <= end]
        offset, limit = int(p.get("offset", "0")), int(p.get("limit", "100000"))
        page = picked[offset : offset + limit]
        return 200, {
            "realtime_start": "2024-06-01",
            "realtime_end": "2024-06-01",
            "observation_start": start,
            "observation_end": end,
            "units": "lin",
            "output_type": 1,
            "file_type": "json",
            "order_by": "observation_date",
            "sort_order": "asc",
            "count": len(picked),
            "offset": offset,
            "limit": limit,
            "observations": [
                {"realtime_start": "2024-06-01", "realtime_end": "2024-06-01", "date": d, "value": v} for d, v in page
            ],
        }
