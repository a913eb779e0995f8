"""``dagster definitions validate`` in a subprocess, as CI and the webserver load the code location."""


def test_code_location_passes_dagster_definitions_validate(tmp_path):
    """What CI and the webserver do on load; in-process runs skip these checks (e.g. a partitioned
    check whose partitions differ from its target's only fails here)."""
    import os
    import subprocess
    import sys

    from usdcop_assets.cli import PROJECT_ROOT

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("USDCOP_LAKE", "USDCOP_WAREHOUSE", "USDCOP_SOURCE"))
    }
    env.update(USDCOP_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Validation successful for code location usdcop_assets" in done.stdout + done.stderr
