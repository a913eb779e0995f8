"""The dashboard end to end in a real browser: ``streamlit run streamlit_app/app.py`` served on loopback over a
platform the CLI filled (L0-L3, three synthetic sessions), then headless Chromium dumps the rendered DOM and
takes a screenshot of the trading terminal. Chromium is the Debian package ``chromium``: a missing browser is a
failure pointing at ``bash scripts/browser-up.sh``, never a skip."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app" / "app.py"
FIRST, LAST = "2025-03-12", "2025-03-14"  # three sessions: 180 synthetic bars
BARS = 180
CONFIG_VARS = ("USDCOP_HOME", "USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "DAGSTER_HOME", "USDCOP_OBS_CONFIG",
               "USDCOP_OBS_TRAIN_WINDOW", "AWS_ENDPOINT_URL")  # streamlit_app/data.py CONFIG_VARS
WINDOW = (1400, 1000)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  f"--window-size={WINDOW[0]},{WINDOW[1]}",
                  # virtual time runs ahead of the wall clock and does not wait for the websocket deltas, so the
                  # budget is large (a render takes ~4 s of wall time) and a page that is not there yet is retried
                  "--virtual-time-budget=600000"]
UP, DOWN = (0x26, 0xA6, 0x9A), (0xEF, 0x53, 0x50)  # streamlit_app/charts.py candle colours
RENDER_DEADLINE = 30.0  # s of DOM retries; the fixture takes ~18 s, the screenshots ~5 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    """(url, scratch dir): the app served by ``streamlit run`` over a filled home; the server is stopped after."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("headless Chromium (`chromium`, Debian package chromium) is not on PATH: run `bash scripts/browser-up.sh`")
    home = tmp_path_factory.mktemp("browser_home")
    scratch = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS and not k.startswith(("USDCOP_", "STREAMLIT_"))}
    env.update(USDCOP_HOME=str(home), USDCOP_SOURCE="synthetic:clean", USDCOP_MACRO_SOURCE="synthetic")  # counts below: every bar
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "usdcop"), "backfill", "--start", FIRST, "--end", LAST, "--layers", "L0,L1,L2,L3"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = scratch / "streamlit.out", scratch / "streamlit.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        server = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "streamlit"), "run", str(APP), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            env=env, cwd=ROOT, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
        )
    try:
        deadline, last = time.monotonic() + 60, ""
        while True:
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with {server.returncode} before answering /_stcore/health\n"
                            f"stderr:\n{_tail(err)}\nstdout:\n{_tail(out)}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    last = resp.read().decode(errors="replace").strip()
                    if resp.status == 200 and last == "ok":
                        break
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer ok on {url}/_stcore/health within 60 s (last: {last})\n"
                            f"stderr:\n{_tail(err)}\nstdout:\n{_tail(out)}")
            time.sleep(0.3)
        yield url, scratch, chromium
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _chromium(chromium: str, scratch: Path, args: list[str], url: str) -> subprocess.CompletedProcess:
    """One headless Chromium run (own profile under ``scratch``); its whole process group is killed on timeout."""
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={scratch / 'chromium-profile'}", *args, url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=scratch, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"chromium {' '.join(args)} did not finish in 40 s:\n{stderr.decode(errors='replace')[-3000:]}")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(errors="replace"),
                                         stderr.decode(errors="replace"))
    assert result.returncode == 0, f"chromium {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def _rendered(dom: str) -> bool:
    chart = dom.find('data-testid="stVegaLiteChart"')
    return chart >= 0 and "vega-embed" in dom[max(0, chart - 200): chart + 300] and '<svg' in dom[chart: chart + 2000]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR", "PNG without an IHDR chunk first"
    return struct.unpack(">II", data[16:24])


def test_terminal_in_headless_chromium(served_app):
    url, scratch, chromium = served_app
    started = time.monotonic()

    # --dump-dom: retried until the chart is in the DOM (the first run also warms the server's caches)
    attempts = []
    while True:
        dom = _chromium(chromium, scratch, ["--dump-dom"], url).stdout
        attempts.append(len(dom))
        if _rendered(dom) or time.monotonic() - started > RENDER_DEADLINE:
            break
    (scratch / "terminal.html").write_text(dom)
    assert "<title>USD/COP platform</title>" in dom  # st.set_page_config(page_title=...)
    assert 'id="trading-terminal"' in dom and ">Trading terminal</span>" in dom  # the page's st.title (h1)
    assert _rendered(dom), f"no Vega-Lite chart in the DOM after {len(attempts)} tries (DOM sizes {attempts}): {scratch / 'terminal.html'}"
    chart = dom[dom.find('data-testid="stVegaLiteChart"'):]
    assert 'class="marks"' in chart[:2000]  # Vega's SVG renderer output
    assert "USD/COP 5-min, last 20 sessions · SYNTHETIC" in chart  # the chart's title, drawn inside the SVG
    assert f"SYNTHETIC DATA: {BARS} of {BARS} bars come from the synthetic source" in dom  # the marker

    # --screenshot: a PNG of the window size showing the page and the candles
    png = scratch / "terminal.png"
    for attempt in range(6):  # under a loaded machine the first shots can come before the page painted
        if attempt:
            time.sleep(2.0 * attempt)
        png.unlink(missing_ok=True)
        _chromium(chromium, scratch, [f"--screenshot={png}"], url)
        assert png.is_file(), f"chromium wrote no screenshot at {png}"
        data = png.read_bytes()
        assert _png_size(data) == WINDOW
        from PIL import Image  # Pillow ships with Streamlit

        with Image.open(png) as im:
            assert im.size == WINDOW
            colours = Counter(im.convert("RGB").get_flattened_data()
                              if hasattr(im, "get_flattened_data") else im.convert("RGB").getdata())
        if colours[UP] > 50 and colours[DOWN] > 50:
            break
    assert len(colours) > 500, f"the screenshot looks blank: {len(colours)} distinct colours ({png})"
    top_share = colours.most_common(1)[0][1] / (WINDOW[0] * WINDOW[1])
    assert top_share < 0.95, f"the screenshot is {top_share:.0%} one colour ({png})"
    assert colours[UP] > 50 and colours[DOWN] > 50, (
        f"no candles in the screenshot: {colours[UP]} up / {colours[DOWN]} down pixels ({png})")
