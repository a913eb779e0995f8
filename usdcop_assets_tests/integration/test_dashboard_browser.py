"""The dashboard end to end in a real browser: ``streamlit run streamlit_app/app.py`` served on loopback over a
home after a main-job-like run (``main_job_home``: L0-L4, a trained fold, its actions, backtests and
performance), then headless Chromium dumps the rendered DOM and takes screenshots of the trading terminal and
the model page: plotly's SVG must hold the candles (one ``path.box`` per bar of the last 20 sessions) and the
agent's equity curve, and the screenshots must show them (candle and equity-line colours). Chromium is the
Debian package ``chromium``: a missing browser is a failure pointing at ``bash scripts/browser-up.sh``, never a skip.

Streamlit paints late (the script runs after the page loads, then plotly draws): a DOM or screenshot taken
too early is retried until it shows what is asserted, within a deadline."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from usdcop_assets_tests.dashboard_home import child_env

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "streamlit_app" / "app.py"
BARS = 62 * 60  # 62 sessions of clean synthetic bars, 2024-12-02 .. 2025-02-28 (dashboard_home.py)
CANDLES = 20 * 60  # the terminal's default window: the last 20 sessions
WINDOW = (1400, 1000)
TALL = (1400, 1700)  # the model page: metrics, the strategy table, then the equity curve
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # virtual time runs ahead of the wall clock and does not wait for the websocket deltas, so the
    # budget is large (a render takes ~4 s of wall time) and a page that is not there yet is retried
    "--virtual-time-budget=600000",
]
UP, DOWN = (0x26, 0xA6, 0x9A), (0xEF, 0x53, 0x50)  # streamlit_app/charts.py candle colours
AGENT = (0x1F, 0x77, 0xB4)  # charts.STRATEGY_COLORS["ppo"]: the agent's equity line
RENDER_DEADLINE = 60.0  # s of retries per page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@pytest.fixture(scope="module")
def served_app(main_job_home, tmp_path_factory):
    """(url, scratch dir, chromium): the app served by ``streamlit run`` over the main-job home; stopped after."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "headless Chromium (`chromium`, Debian package chromium) is not on PATH: run `bash scripts/browser-up.sh`"
        )
    scratch = tmp_path_factory.mktemp("browser")
    env = child_env(main_job_home)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = scratch / "streamlit.out", scratch / "streamlit.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(APP),
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
            ],
            env=env,
            cwd=ROOT,
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline, last = time.monotonic() + 60, ""
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"streamlit exited with {server.returncode} before answering /_stcore/health\n"
                    f"stderr:\n{_tail(err)}\nstdout:\n{_tail(out)}"
                )
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    last = resp.read().decode(errors="replace").strip()
                    if resp.status == 200 and last == "ok":
                        break
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit did not answer ok on {url}/_stcore/health within 60 s (last: {last})\n"
                    f"stderr:\n{_tail(err)}\nstdout:\n{_tail(out)}"
                )
            time.sleep(0.3)
        yield url, scratch, chromium
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _chromium(chromium: str, scratch: Path, args: list[str], url: str, window=WINDOW) -> subprocess.CompletedProcess:
    """One headless Chromium run (own profile under ``scratch``); its whole process group is killed on timeout."""
    proc = subprocess.Popen(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={scratch / 'chromium-profile'}",
            *args,
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=scratch,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"chromium {' '.join(args)} did not finish in 60 s:\n{stderr.decode(errors='replace')[-3000:]}")
    result = subprocess.CompletedProcess(
        proc.args, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
    )
    assert result.returncode == 0, f"chromium {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR", "PNG without an IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def _dom_until(chromium, scratch, url, ready, name: str) -> str:
    """The rendered DOM, retried until ``ready(dom)`` (Streamlit runs the script after the load, plotly draws after
    that)."""
    started, sizes = time.monotonic(), []
    while True:
        dom = _chromium(chromium, scratch, ["--dump-dom"], url).stdout
        sizes.append(len(dom))
        if ready(dom) or time.monotonic() - started > RENDER_DEADLINE:
            break
        time.sleep(1.0)
    (scratch / f"{name}.html").write_text(dom)
    assert ready(dom), (
        f"{name}: the page never showed what is asserted after {len(sizes)} tries (DOM sizes {sizes}): "
        f"{scratch / f'{name}.html'}"
    )
    return dom


def _screenshot_until(chromium, scratch, url, window, ready, name: str) -> Counter:
    """Pixel colour counts of a screenshot, retried until ``ready(colours)``."""
    from PIL import Image  # Pillow ships with Streamlit

    png = scratch / f"{name}.png"
    started = time.monotonic()
    while True:
        png.unlink(missing_ok=True)
        _chromium(chromium, scratch, [f"--screenshot={png}"], url, window)
        assert png.is_file(), f"chromium wrote no screenshot at {png}"
        assert _png_size(png.read_bytes()) == window
        with Image.open(png) as im:
            rgb = im.convert("RGB")
            colours = Counter(rgb.get_flattened_data() if hasattr(rgb, "get_flattened_data") else rgb.getdata())
        if ready(colours) or time.monotonic() - started > RENDER_DEADLINE:
            break
        time.sleep(2.0)
    assert len(colours) > 500, f"the screenshot looks blank: {len(colours)} distinct colours ({png})"
    top_share = colours.most_common(1)[0][1] / (window[0] * window[1])
    assert top_share < 0.95, f"the screenshot is {top_share:.0%} one colour ({png})"
    return colours


def _plot_titles(dom: str) -> list[str]:
    """The plotly figure titles as text (Streamlit's theme wraps them in <b>)."""
    return [
        re.sub(r"<[^>]+>", "", html.unescape(t))
        for t in re.findall(r'class="gtitle"[^>]*data-unformatted="([^"]*)"', dom)
    ]


def test_terminal_in_headless_chromium(served_app):
    url, scratch, chromium = served_app
    dom = _dom_until(chromium, scratch, url, lambda d: d.count('<path class="box"') >= CANDLES, "terminal")
    assert "<title>USD/COP platform</title>" in dom  # st.set_page_config(page_title=...)
    assert 'id="trading-terminal"' in dom and ">Trading terminal</span>" in dom  # the page's st.title (h1)
    chart = dom[dom.find('data-testid="stPlotlyChart"') :]
    assert chart.count('class="trace boxes"') == 1  # one candlestick trace, drawn by plotly as boxes
    assert chart.count('<path class="box"') == CANDLES  # a candle per bar of the last 20 sessions
    assert any("USD/COP 5-min, last 20 sessions · SYNTHETIC" in t for t in _plot_titles(dom))
    assert "time (Bogota, UTC−5)" in chart  # the axis names the zone
    assert (
        'data-unformatted="agent long"' in chart and 'data-unformatted="agent exit"' in chart
    )  # the agent's markers (legend)
    assert f"SYNTHETIC DATA: {BARS:,} of {BARS:,} bars come from the synthetic source" in dom  # the marker

    colours = _screenshot_until(chromium, scratch, url, WINDOW, lambda c: c[UP] > 50 and c[DOWN] > 50, "terminal")
    assert colours[UP] > 50 and colours[DOWN] > 50, (
        f"no candles in the screenshot: {colours[UP]} up / {colours[DOWN]} down pixels"
    )


def test_model_page_in_headless_chromium(served_app):
    url, scratch, chromium = served_app
    page = f"{url}/model"

    def equity_drawn(dom: str) -> bool:
        return any(t.startswith("Equity per session") for t in _plot_titles(dom)) and 'class="js-line"' in dom

    dom = _dom_until(chromium, scratch, page, equity_drawn, "model")
    assert 'id="model-and-backtest"' in dom
    assert dom.count('data-testid="stPlotlyChart"') == 3  # equity/drawdown, rolling Sharpe, trade P&L
    # the agent's equity line: an SVG polyline in its colour across the plot's width (plotly drops collinear vertices)
    lines = re.findall(r'<path class="js-line" d="(M[^"]*)"[^>]*stroke: rgb\(31, 119, 180\)', dom)
    spans = [
        (len(xs), max(xs) - min(xs)) for xs in ([float(x) for x in re.findall(r"[ML]([-\d.]+),", d)] for d in lines)
    ]
    assert any(n >= 3 and width > 600 for n, width in spans), f"no agent equity curve in the SVG: {spans}"
    assert "session (Bogota)" in dom
    colours = _screenshot_until(chromium, scratch, page, TALL, lambda c: c[AGENT] > 150, "model")
    assert colours[AGENT] > 150, f"no agent equity curve in the screenshot: {colours[AGENT]} pixels of its colour"
