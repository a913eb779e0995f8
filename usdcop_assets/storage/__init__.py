"""Storage: the lake (Parquet session objects, leases) and the SQL warehouse (pure; no Dagster)."""
