from __future__ import annotations

import gzip
import logging

import pytest
from botocore.stub import Stubber

from fruits_airflow.step_logs import explain_step_failures, read_log_tail, step_log_uri

CLUSTER_ID = "j-1ABCDEFGHIJK"
STEP_IDS = ["s-EXTRACT", "s-PCA"]
STDERR = "\n".join(
    [f"26/03/01 10:00:{second:02d} INFO SparkContext: line {second}" for second in range(60)]
    + [
        "Traceback (most recent call last):",
        '  File "extract_features.py", line 5, in <module>',
        "fruits_spark.errors.JobInputError: no images under s3://fruits-test-bucket/images/",
    ]
)
FAILURE_DETAILS = {
    "Reason": "Unknown Error.",
    "Message": "Exception in thread main: Step exited with code 1",
    "LogFile": f"s3://fruits-test-bucket/logs/{CLUSTER_ID}/steps/s-EXTRACT/stderr.gz",
}


def script_failed_run(stubber: Stubber, log_uri: str = "s3n://fruits-test-bucket/logs/") -> None:
    """extract_features failed, so EMR cancelled pca."""
    stubber.add_response(
        "describe_cluster", {"Cluster": {"Id": CLUSTER_ID, "LogUri": log_uri}}, {"ClusterId": CLUSTER_ID}
    )
    stubber.add_response(
        "list_steps",
        {
            "Steps": [
                {"Id": "s-PCA", "Name": "pca", "Status": {"State": "CANCELLED"}},
                {
                    "Id": "s-EXTRACT",
                    "Name": "extract_features",
                    "Status": {"State": "FAILED", "FailureDetails": FAILURE_DETAILS},
                },
            ]
        },
        {"ClusterId": CLUSTER_ID, "StepIds": STEP_IDS},
    )


def put_stderr(s3, bucket: str, step_id: str = "s-EXTRACT", text: str = STDERR) -> None:
    s3.put_object(Bucket=bucket, Key=f"logs/{CLUSTER_ID}/steps/{step_id}/stderr.gz", Body=gzip.compress(text.encode()))


@pytest.mark.parametrize("log_uri", ["s3://b/logs/", "s3n://b/logs", "s3a://b/logs/"])
def test_stderr_lives_under_the_log_uri_by_cluster_and_step(log_uri):
    assert step_log_uri(log_uri, CLUSTER_ID, "s-1") == f"s3://b/logs/{CLUSTER_ID}/steps/s-1/stderr.gz"


def test_a_log_uri_outside_s3_is_refused():
    with pytest.raises(ValueError, match="not an S3 URI"):
        step_log_uri("hdfs:///logs", CLUSTER_ID, "s-1")


def test_the_tail_is_the_last_lines_of_the_gzipped_stderr(s3, bucket):
    put_stderr(s3, bucket)

    tail = read_log_tail(s3, step_log_uri(f"s3://{bucket}/logs/", CLUSTER_ID, "s-EXTRACT"), lines=3)

    assert tail.splitlines() == STDERR.splitlines()[-3:]


def test_a_stderr_not_archived_yet_has_no_tail(s3, bucket):
    assert read_log_tail(s3, f"s3://{bucket}/logs/{CLUSTER_ID}/steps/s-X/stderr.gz") is None


def test_a_failed_step_is_explained_by_its_reason_and_stderr_tail(s3, bucket, stubbed_emr, caplog):
    emr, stubber = stubbed_emr
    script_failed_run(stubber)
    put_stderr(s3, bucket)

    with caplog.at_level(logging.ERROR, logger="fruits_airflow.step_logs"):
        failures = explain_step_failures(emr, s3, CLUSTER_ID, STEP_IDS, tail_lines=5, log_wait_seconds=0)

    failed, cancelled = failures
    assert (failed.name, failed.state, failed.reason) == ("extract_features", "FAILED", "Unknown Error.")
    assert failed.stderr_tail.endswith("JobInputError: no images under s3://fruits-test-bucket/images/")
    assert (cancelled.name, cancelled.state, cancelled.stderr_tail) == ("pca", "CANCELLED", None)
    logged = caplog.text
    assert "EMR step extract_features (s-EXTRACT) FAILED: Unknown Error.: Exception in thread main" in logged
    assert f"Last lines of s3://fruits-test-bucket/logs/{CLUSTER_ID}/steps/s-EXTRACT/stderr.gz" in logged
    assert "JobInputError: no images under" in logged
    assert "line 54" not in logged


def test_a_stderr_archived_while_waiting_is_still_shown(s3, bucket, stubbed_emr):
    emr, stubber = stubbed_emr
    script_failed_run(stubber)
    polls = []

    def sleep_then_archive(seconds):
        polls.append(seconds)
        put_stderr(s3, bucket)

    failures = explain_step_failures(emr, s3, CLUSTER_ID, STEP_IDS, log_wait_seconds=60, sleep=sleep_then_archive)

    assert len(polls) == 1
    assert "JobInputError" in failures[0].stderr_tail


def test_a_stderr_never_archived_is_reported_with_where_to_look(s3, bucket, stubbed_emr, caplog):
    emr, stubber = stubbed_emr
    script_failed_run(stubber)

    with caplog.at_level(logging.ERROR, logger="fruits_airflow.step_logs"):
        failures = explain_step_failures(emr, s3, CLUSTER_ID, STEP_IDS, log_wait_seconds=0)

    assert failures[0].stderr_tail is None
    assert failures[0].stdout_tail is None
    assert f"No stderr at s3://fruits-test-bucket/logs/{CLUSTER_ID}/steps/s-EXTRACT/stderr.gz yet" in caplog.text


def test_the_jobs_own_error_line_is_shown_from_stdout(s3, bucket, stubbed_emr, caplog):
    """spark-submit relays the Python driver's output on stdout, so the job's error line is there."""
    emr, stubber = stubbed_emr
    script_failed_run(stubber)
    put_stderr(s3, bucket)
    s3.put_object(
        Bucket=bucket,
        Key=f"logs/{CLUSTER_ID}/steps/s-EXTRACT/stdout.gz",
        Body=gzip.compress(b"starting\nextract_features: error: --images s3://b/images/ does not exist\n"),
    )

    with caplog.at_level(logging.ERROR, logger="fruits_airflow.step_logs"):
        failures = explain_step_failures(emr, s3, CLUSTER_ID, STEP_IDS, log_wait_seconds=0)

    assert failures[0].stdout_tail.endswith("extract_features: error: --images s3://b/images/ does not exist")
    assert "extract_features: error: --images" in caplog.text
