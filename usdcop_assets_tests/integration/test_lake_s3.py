"""The lake on a real S3-compatible server (moto on loopback): every store-generic test of unit/test_lake.py
again with the ``store`` fixture on S3, plus what only S3 has (prefixes, a put refused before sending, a
missing bucket)."""

from __future__ import annotations

import pytest

from usdcop_assets.core.settings import parse_lake_url
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import LakeUnavailable, LocalObjectStore, S3ObjectStore, open_store
from usdcop_assets_tests.unit.test_lake import (  # noqa: F401  (fixtures and the store-generic tests, collected here on S3)
    BAR,
    DATASET,
    _closed_port,
    _objects,
    _span,
    bars,
    days,
    table,
    test_bar_by_bar_equals_one_range_write,
    test_empty_frame_removes_the_window,
    test_failed_data_put_changes_nothing,
    test_failure_between_data_and_manifest_is_detected_and_repaired,
    test_manifest_describes_the_stored_object,
    test_naive_times_are_rejected,
    test_partial_rewrite_with_reordered_columns,
    test_partial_window_across_two_sessions,
    test_read_edge_windows,
    test_read_look_back_window_spans_sessions,
    test_read_returns_exactly_the_window_in_one_sorted_frame,
    test_rewriting_the_same_rows_gives_identical_objects,
    test_rewriting_unchanged_sessions_writes_nothing_and_changed_ones_are_rewritten,
    test_rows_go_to_their_bogota_calendar_date,
    test_rows_outside_the_window_are_rejected,
    test_single_bar_rewrite_replaces_only_that_bar,
    test_store_basics,
    test_unpartitioned_object_round_trip,
    test_verify_reports_tampered_and_missing_objects,
    test_write_creates_one_object_and_manifest_per_session,
    times,
)

pytestmark = pytest.mark.s3


@pytest.fixture
def store(s3_bucket):
    """Overrides unit/test_lake.py's local ``store`` for the imported tests (the s3_server fixture set
    AWS_ENDPOINT_URL)."""
    return S3ObjectStore(s3_bucket, prefix="lake")


def test_s3_put_failing_before_send_keeps_old_object(s3_bucket, bars, times, days):  # noqa: F811 (fixtures)
    table = SessionTable(S3ObjectStore(s3_bucket), DATASET)  # noqa: F811 (a local, not the fixture)
    table.write(bars, *_span(times))
    before = _objects(table.store)

    sent = []

    def refuse(request, **kwargs):
        sent.append(request.url)
        raise ConnectionError("simulated network drop before the PUT is sent")

    events = table.store._client.meta.events
    events.register("before-send.s3.PutObject", refuse)
    try:
        with pytest.raises(ConnectionError, match="simulated"):
            table.write(bars.iloc[[3]].assign(close=1.0), times[3], times[3] + BAR)
    finally:
        events.unregister("before-send.s3.PutObject", refuse)

    assert sent  # the failure really happened inside the PUT
    assert _objects(table.store) == before
    assert table.verify(days[0]) == []


def test_s3_prefix_is_applied(s3_bucket):
    import boto3

    store = S3ObjectStore(s3_bucket, prefix="/lake/v1/")
    assert store.location == f"s3://{s3_bucket}/lake/v1"
    store.put("ds/x", b"x")
    raw = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert raw == ["lake/v1/ds/x"]
    assert store.list("ds/") == ["ds/x"]


def test_open_store_from_urls(tmp_path, s3_bucket):
    local = open_store(parse_lake_url(f"file://{tmp_path}/lk"))
    assert isinstance(local, LocalObjectStore) and local.location == f"{tmp_path}/lk"
    s3 = open_store(parse_lake_url(f"s3://{s3_bucket}/pre/fix"))
    assert isinstance(s3, S3ObjectStore) and s3.bucket == s3_bucket and s3.prefix == "pre/fix"
    s3.check()


def test_s3_check_on_missing_bucket(s3_server):
    store = S3ObjectStore("no-such-bucket-for-usdcop")
    with pytest.raises(LakeUnavailable) as err:
        store.check()
    assert "no-such-bucket-for-usdcop" in str(err.value)
    assert "USDCOP_LAKE_URL" in str(err.value)
    assert "does not exist" in str(err.value)
