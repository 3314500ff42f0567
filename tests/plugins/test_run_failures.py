from __future__ import annotations

import gzip
import json
import logging

import pytest

from fruits_airflow.paths import RunPaths
from fruits_airflow.run_failures import find_failure, log_failure, progress, with_job_error, with_log_tails

BOOTSTRAP_MESSAGE = "On the master instance (i-0b0t), bootstrap action 1 returned a non-zero return code"
UV_ERROR = "error: Failed to parse: `numpy=== 2.0`"
STEP_FAILURE = {"Reason": "Unknown Error.", "Message": "Step exited with code 2", "LogFile": "s3://b/logs/x/stderr.gz"}


def put_log(s3, bucket: str, key: str, text: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(text.encode()))


def put_bootstrap_stderr(s3, bucket, cluster_id, instance="i-0b0t", action=1, text=f"installing\n{UV_ERROR}\n"):
    put_log(s3, bucket, f"logs/{cluster_id}/node/{instance}/bootstrap-actions/{action}/stderr.gz", text)


@pytest.mark.parametrize(
    ("step", "cluster", "expected"),
    [
        ("COMPLETED", "WAITING", "COMPLETED"),
        ("COMPLETED", "TERMINATED", "COMPLETED"),
        ("PENDING", "STARTING", "RUNNING"),
        ("RUNNING", "RUNNING", "RUNNING"),
        ("PENDING", "TERMINATED_WITH_ERRORS", "FAILED"),
        ("RUNNING", "TERMINATING", "FAILED"),
        ("PENDING", "TERMINATED", "FAILED"),
        ("CANCELLED", "WAITING", "FAILED"),
        ("FAILED", "WAITING", "FAILED"),
        ("INTERRUPTED", "RUNNING", "FAILED"),
    ],
)
def test_a_run_fails_as_soon_as_its_step_fails_or_its_cluster_ends_first(step, cluster, expected):
    assert progress(step, cluster) == expected


def test_a_bootstrap_failure_is_the_cluster_s_fault_not_the_cancelled_steps(emr_run):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)

    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    assert failure.cause == "cluster"
    assert (failure.cluster.reason_code, failure.cluster.reason_message) == ("BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)
    assert failure.summary() == (
        f"EMR cluster {emr_run.cluster_id} TERMINATED_WITH_ERRORS before the run's steps completed: "
        f"BOOTSTRAP_FAILURE: {BOOTSTRAP_MESSAGE}"
    )
    assert [(step.name, step.state) for step in failure.steps] == [
        ("extract_features", "CANCELLED"),
        ("pca", "CANCELLED"),
    ]


def test_a_cluster_ending_with_errors_while_steps_still_show_pending_is_found(emr_run):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "VALIDATION_ERROR", "The subnet does not exist.", steps=None)

    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    assert (failure.cause, failure.cluster.reason_code) == ("cluster", "VALIDATION_ERROR")
    assert "VALIDATION_ERROR: The subnet does not exist." in failure.summary()


def test_a_cluster_terminated_from_outside_mid_step_is_the_cause(emr_run):
    emr_run.end_cluster("TERMINATED", "USER_REQUEST", "Terminated by user request")

    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    assert failure.cause == "cluster"
    assert failure.summary().endswith(
        "TERMINATED before the run's steps completed: USER_REQUEST: Terminated by user request"
    )


def test_a_failed_step_stays_the_cause_once_the_teardown_terminates_the_cluster(emr_run):
    emr_run.set_step(0, "FAILED", STEP_FAILURE)
    emr_run.set_step(1, "CANCELLED")
    emr_run.end_cluster("TERMINATED", "USER_REQUEST", "Terminated by user request", steps=None)

    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    assert failure.cause == "step"
    assert failure.summary() == (
        f"EMR step extract_features ({emr_run.step_ids[0]}) FAILED: Unknown Error.: Step exited with code 2"
    )


def test_completed_steps_are_no_failure_whatever_the_cluster_does_after(emr_run):
    emr_run.set_step(0, "COMPLETED")
    emr_run.set_step(1, "COMPLETED")
    emr_run.end_cluster("TERMINATED", "USER_REQUEST", "Terminated by user request")

    assert find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids) is None


def test_a_running_run_has_no_failure(emr_run):
    assert find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids) is None


def test_a_bootstrap_failure_comes_with_the_failed_action_s_stderr_tail(emr_run, s3, bucket):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)
    put_bootstrap_stderr(
        s3, bucket, emr_run.cluster_id, text="\n".join(f"line {n}" for n in range(50)) + f"\n{UV_ERROR}"
    )
    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    (stderr,) = with_log_tails(s3, failure, tail_lines=3, log_wait_seconds=0).logs

    assert stderr.uri == f"s3://{bucket}/logs/{emr_run.cluster_id}/node/i-0b0t/bootstrap-actions/1/stderr.gz"
    assert stderr.tail.splitlines() == ["line 48", "line 49", UV_ERROR]


def test_the_failed_node_named_by_emr_and_its_last_action_are_the_ones_shown(emr_run, s3, bucket):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)
    put_bootstrap_stderr(s3, bucket, emr_run.cluster_id, instance="i-0a11", text="fine\n")
    put_bootstrap_stderr(s3, bucket, emr_run.cluster_id, action=1, text="action 1 went well\n")
    put_bootstrap_stderr(s3, bucket, emr_run.cluster_id, action=2)
    put_log(s3, bucket, f"logs/{emr_run.cluster_id}/node/i-0b0t/bootstrap-actions/3/stdout.gz", "not stderr")
    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    (stderr,) = with_log_tails(s3, failure, log_wait_seconds=0).logs

    assert stderr.uri.endswith("/node/i-0b0t/bootstrap-actions/2/stderr.gz")
    assert UV_ERROR in stderr.tail


def test_bootstrap_logs_archived_while_waiting_are_still_shown(emr_run, s3, bucket):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)
    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)
    polls = []

    def sleep_then_archive(seconds):
        polls.append(seconds)
        put_bootstrap_stderr(s3, bucket, emr_run.cluster_id)

    (stderr,) = with_log_tails(s3, failure, log_wait_seconds=60, sleep=sleep_then_archive).logs

    assert len(polls) == 1
    assert stderr.tail.endswith(UV_ERROR)


def test_bootstrap_logs_never_archived_say_where_to_look(emr_run, s3, bucket, caplog):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)
    failure = with_log_tails(s3, find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids), log_wait_seconds=0)

    with caplog.at_level(logging.ERROR, logger="fruits_airflow.run_failures"):
        log_failure(failure)

    (stderr,) = failure.logs
    assert stderr.tail is None
    assert (
        f"No stderr of the failed bootstrap action at s3://{bucket}/logs/{emr_run.cluster_id}/node/ yet" in caplog.text
    )


def test_a_failed_step_comes_with_its_stdout_and_stderr_tails(emr_run, s3, bucket, caplog):
    emr_run.set_step(0, "FAILED", STEP_FAILURE)
    emr_run.set_step(1, "CANCELLED")
    steps_prefix = f"logs/{emr_run.cluster_id}/steps/{emr_run.step_ids[0]}"
    put_log(s3, bucket, f"{steps_prefix}/stdout.gz", "extract_features: error: --images s3://b/images/ is empty\n")
    put_log(s3, bucket, f"{steps_prefix}/stderr.gz", "INFO SparkContext: stopped\n")
    failure = with_log_tails(s3, find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids), log_wait_seconds=0)

    with caplog.at_level(logging.ERROR, logger="fruits_airflow.run_failures"):
        log_failure(failure)

    assert [tail.tail for tail in failure.logs] == [
        "extract_features: error: --images s3://b/images/ is empty",
        "INFO SparkContext: stopped",
    ]
    assert "extract_features: error: --images s3://b/images/ is empty" in caplog.text
    assert STEP_FAILURE["LogFile"] in caplog.text


def test_a_cluster_ended_from_outside_has_no_log_to_wait_for(emr_run, s3):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "INSTANCE_FAILURE", "Instance i-0c0r was lost (spot)")

    def no_sleep(seconds):
        raise AssertionError("waited for logs that EMR does not write")

    failure = with_log_tails(s3, find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids), sleep=no_sleep)

    assert failure.logs == ()


def test_the_report_is_json_with_the_reason_steps_and_tails(emr_run, s3, bucket):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)
    put_bootstrap_stderr(s3, bucket, emr_run.cluster_id)
    failure = with_log_tails(s3, find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids), log_wait_seconds=0)

    report = json.loads(json.dumps(failure.to_dict()))

    assert report["cause"] == "cluster"
    assert report["summary"] == failure.summary()
    assert report["cluster"]["state"] == "TERMINATED_WITH_ERRORS"
    assert report["cluster"]["reason_code"] == "BOOTSTRAP_FAILURE"
    assert [step["state"] for step in report["steps"]] == ["CANCELLED", "CANCELLED"]
    assert report["logs"][0]["tail"].endswith(UV_ERROR)


PATHS = RunPaths("fruits-test-bucket", "manual__r-0123abcd", "none")
PCA_ERROR = "pca: error: --features s3://b/features/none holds 1 image(s); PCA needs at least 2"


def fail_pca(emr_run) -> None:
    emr_run.set_step(0, "COMPLETED")
    emr_run.set_step(1, "FAILED", {"Reason": "Unknown Error."})


def test_the_failed_job_s_own_line_comes_first_and_emr_s_reason_follows(emr_run, s3, bucket):
    fail_pca(emr_run)
    s3.put_object(
        Bucket=bucket, Key=PATHS.job_failure_key("pca"), Body=json.dumps({"job": "pca", "message": PCA_ERROR})
    )
    found = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    failure = with_job_error(s3, found, PATHS)

    assert failure.summary() == PCA_ERROR
    assert failure.emr_reason() == f"EMR step pca ({emr_run.step_ids[1]}) FAILED: Unknown Error."
    assert failure.to_dict()["summary"] == PCA_ERROR


def test_a_job_that_wrote_no_reason_leaves_emr_s_first(emr_run, s3, bucket):
    fail_pca(emr_run)
    s3.put_object(Bucket=bucket, Key=PATHS.job_failure_key("extract_features"), Body=b'{"message": "older"}')
    found = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    assert with_job_error(s3, found, PATHS).summary() == found.emr_reason()


def test_emr_s_reason_never_repeats_itself(emr_run):
    reason = "The step's command exited with code 2"
    emr_run.set_step(0, "FAILED", {"Reason": reason, "Message": reason})

    failure = find_failure(emr_run.emr, emr_run.cluster_id, emr_run.step_ids)

    assert failure.summary() == f"EMR step extract_features ({emr_run.step_ids[0]}) FAILED: {reason}"
