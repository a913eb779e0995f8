"""Run tags the automation reads (kept apart so conditions and checks share them without importing each other)."""

CLI_TAG = "usdcop/launched_by"  # set on every run the usdcop CLI starts
