"""A real ``dagster-daemon run`` on the project's workspace, for the tests of what only the daemon does
(declarative automation, freshness evaluation, sensors on their intervals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def home_env(root: Path, **extra: str) -> dict:
    """The environment of an embedded-default home under ``root`` (synthetic source), its dagster.yaml written."""
    from usdcop_assets.cli import init_instance_home

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("USDCOP_", "TWELVEDATA_", "FRED_", "DAGSTER_", "FRESHNESS_"))
    }
    home = root / "home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    init_instance_home(dagster_home)
    env.update(
        {
            "USDCOP_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "USDCOP_SOURCE": "synthetic",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


class Daemon:
    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc, self.log_path = proc, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.5):
        """``predicate()``'s first truthy value; fails naming ``what`` (with the daemon log's tail) after
        ``timeout``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"dagster-daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log()[-4000:]}"
                )
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise AssertionError(f"no {what} within {timeout:.0f} s\n--- daemon log tail ---\n{self.log()[-4000:]}")


@contextmanager
def running_daemon(env: dict, log_path: Path):
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Daemon(proc, log_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def sensor_ticks(instance, name: str) -> list:
    """The finished ticks of the sensor ``name`` (newest first)."""
    from dagster._core.scheduler.instigation import InstigatorType

    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == name]
    if not states:
        return []
    ticks = instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=200)
    return [t for t in ticks if t.end_timestamp]
