from __future__ import annotations

import gzip

import pytest

from fruits_airflow.emr_logs import bootstrap_stderr_uris, read_log_tail, step_log_uri, wait_for

CLUSTER_ID = "j-1ABCDEFGHIJK"
STDERR = "\n".join(
    [f"INFO SparkContext: line {n}" for n in range(60)] + ["fruits_spark.errors.JobInputError: no images"]
)


def put_log(s3, bucket: str, key: str, text: str = STDERR) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(text.encode()))


@pytest.mark.parametrize("log_uri", ["s3://b/logs/", "s3n://b/logs", "s3a://b/logs/"])
def test_a_step_s_logs_live_under_the_log_uri_by_cluster_and_step(log_uri):
    assert step_log_uri(log_uri, CLUSTER_ID, "s-1") == f"s3://b/logs/{CLUSTER_ID}/steps/s-1/stderr.gz"
    assert step_log_uri(log_uri, CLUSTER_ID, "s-1", "stdout") == f"s3://b/logs/{CLUSTER_ID}/steps/s-1/stdout.gz"


def test_a_log_uri_at_the_bucket_s_root_works_too():
    assert step_log_uri("s3://b", CLUSTER_ID, "s-1") == f"s3://b/{CLUSTER_ID}/steps/s-1/stderr.gz"


def test_a_log_uri_outside_s3_is_refused():
    with pytest.raises(ValueError, match="not an S3 URI"):
        step_log_uri("hdfs:///logs", CLUSTER_ID, "s-1")


def test_the_tail_is_the_last_lines_of_the_gzipped_log(s3, bucket):
    put_log(s3, bucket, f"logs/{CLUSTER_ID}/steps/s-1/stderr.gz")

    tail = read_log_tail(s3, step_log_uri(f"s3://{bucket}/logs/", CLUSTER_ID, "s-1"), lines=2)

    assert tail.splitlines() == STDERR.splitlines()[-2:]


def test_a_log_not_archived_yet_has_no_tail(s3, bucket):
    assert read_log_tail(s3, f"s3://{bucket}/logs/{CLUSTER_ID}/steps/s-X/stderr.gz") is None


def test_each_node_s_last_bootstrap_action_is_listed_the_one_emr_names_first(s3, bucket):
    nodes = f"logs/{CLUSTER_ID}/node"
    for key in [
        "i-0aaa/bootstrap-actions/1/stderr.gz",
        "i-0aaa/bootstrap-actions/2/stderr.gz",
        "i-0aaa/bootstrap-actions/10/stdout.gz",
        "i-0aaa/bootstrap-actions/master.log.gz",
        "i-0bbb/bootstrap-actions/1/stderr.gz",
        "i-0bbb/daemons/instance-state/instance-state.log.gz",
    ]:
        put_log(s3, bucket, f"{nodes}/{key}")

    uris = bootstrap_stderr_uris(s3, f"s3n://{bucket}/logs/", CLUSTER_ID, "On the core instance (i-0bbb), ...")

    assert uris == [
        f"s3://{bucket}/{nodes}/i-0bbb/bootstrap-actions/1/stderr.gz",
        f"s3://{bucket}/{nodes}/i-0aaa/bootstrap-actions/2/stderr.gz",
    ]


def test_no_bootstrap_logs_yet_lists_nothing(s3, bucket):
    assert bootstrap_stderr_uris(s3, f"s3://{bucket}/logs/", CLUSTER_ID) == []


def test_waiting_stops_at_the_first_result_and_gives_up_at_the_deadline():
    answers, sleeps = iter([None, None, "found"]), []

    assert wait_for(lambda: next(answers), "a log", 3600, sleeps.append) == "found"
    assert len(sleeps) == 2
    assert wait_for(lambda: None, "a log", 0, sleeps.append) is None
    assert len(sleeps) == 2


def test_an_empty_log_is_found_at_once() -> None:
    sleeps: list[float] = []

    assert wait_for(lambda: "", "an empty log", 3600, sleeps.append) == ""
    assert sleeps == []
