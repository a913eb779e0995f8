"""What a CLI command prints while Dagster runs: one line per stage on the terminal, Dagster's own logs in a file.

Dagster's console logger writes every event (one DEBUG line per partition per asset in a range run) to
``sys.stderr``, looked up when each line is written; :func:`dagster_logs_to` points ``sys.stderr`` at a log
file under the home for the duration of the runs, so the terminal keeps the command's own lines and the file
keeps everything Dagster said (the same events are in the Dagster UI). No Dagster import here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

LOGS_DIR = "logs"


def new_log_path(home: Path, command: str, now: dt.datetime | None = None) -> Path:
    """``<home>/logs/<command>-<UTC timestamp>.log`` (the directory is created)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    folder = Path(home) / LOGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{command}-{stamp}.log"


_active: list[Path] = []


@contextlib.contextmanager
def dagster_logs_to(path: Path):
    """Send what is written to ``sys.stderr`` meanwhile (Dagster's console logger, warnings) to ``path`` (appended)."""
    with open(path, "a", encoding="utf-8", buffering=1) as log, contextlib.redirect_stderr(log):
        _active.append(Path(path))
        try:
            yield log
        finally:
            _active.pop()


def current_log() -> Path | None:
    """The log file of the innermost ``dagster_logs_to`` (worker processes are pointed at it too)."""
    return _active[-1] if _active else None


class Stages:
    """One line per stage: a spinner with the elapsed time while it runs (terminals only), then ``✓``/``✗``,
    the stage's name, what it produced and how long it took."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.started = time.monotonic()

    @contextlib.contextmanager
    def stage(self, name: str):
        """``with stages.stage("L0-L3") as st: ...; st.detail = "80 sessions"`` (``st.ok = False`` on failure)."""
        state = _StageState()
        t0 = time.monotonic()
        status = self.console.status(f"{escape(name)} ...") if self.console.is_terminal else contextlib.nullcontext()
        try:
            with status:
                yield state
        except BaseException:
            state.ok = False
            raise
        finally:
            mark = "[green]✓[/green]" if state.ok else "[red]✗[/red]"
            detail = f": {escape(state.detail)}" if state.detail else ""
            self.console.print(f"{mark} {escape(name)}{detail} [dim]({time.monotonic() - t0:.1f} s)[/dim]")

    def print(self, text: str = "", markup: bool = False) -> None:
        self.console.print(text, markup=markup)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _StageState:
    def __init__(self):
        self.ok = True
        self.detail = ""
