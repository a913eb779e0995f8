"""Core: the market calendar, settings from the environment and frame helpers every other package uses (pure; no
Dagster)."""
