"""EMR's step and cluster state machine, driven through the EMR API of the embedded endpoint."""

from __future__ import annotations

import gzip
import os

import pytest
from botocore.exceptions import ClientError

from fruits_airflow.run_failures import find_failure
from fruits_airflow.triggers import poll
from local_aws.faults import FaultInjector

# Steps reach the endpoint's S3 through its API, with boto3 as a job's own code would.
PUT_ARG3_AT_ARG1_ARG2 = (
    "import boto3, sys; boto3.client('s3').put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=sys.argv[3])"
)
FAIL = "import sys; print('reading images', file=sys.stderr); raise ValueError('bad image 42')"
SLEEP = "import time; time.sleep(60)"


def test_successful_step_completes_and_publishes_its_output(start_cluster, python_step, s3, bucket):
    cluster = start_cluster([python_step("write", PUT_ARG3_AT_ARG1_ARG2, bucket, "out/result.txt", "ripe")])

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "COMPLETED"
    assert step["Status"]["Timeline"]["StartDateTime"] <= step["Status"]["Timeline"]["EndDateTime"]
    assert s3.get_object(Bucket=bucket, Key="out/result.txt")["Body"].read() == b"ripe"


def test_failing_step_reports_failure_details_and_its_stderr_under_log_uri(start_cluster, python_step, s3, bucket):
    cluster = start_cluster([python_step("fail", FAIL)])

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "FAILED"
    details = step["Status"]["FailureDetails"]
    assert "exited with code 1" in details["Reason"]
    assert details["Message"] == "ValueError: bad image 42"
    stderr_key = f"logs/{cluster.id}/steps/{step['Id']}/stderr.gz"
    assert details["LogFile"] == f"s3://{bucket}/{stderr_key}"
    stderr = gzip.decompress(s3.get_object(Bucket=bucket, Key=stderr_key)["Body"].read()).decode()
    assert "reading images" in stderr
    assert "ValueError: bad image 42" in stderr


def test_a_step_that_says_why_on_stdout_only_has_stderr_end_as_emr_s_and_no_repeated_reason(
    start_cluster, python_step, s3, bucket
):
    quiet = (
        "import sys; print('INFO: Created TensorFlow Lite XNNPACK delegate for CPU.', file=sys.stderr);"
        " print('pca: error: --features holds 1 image(s)'); sys.exit(2)"
    )
    cluster = start_cluster([python_step("quiet", quiet)])

    (step,) = cluster.wait_for_steps()

    details = step["Status"]["FailureDetails"]
    assert details["Reason"] == "The step's command exited with code 2"
    assert "Message" not in details
    stderr_key = f"logs/{cluster.id}/steps/{step['Id']}/stderr.gz"
    stderr = gzip.decompress(s3.get_object(Bucket=bucket, Key=stderr_key)["Body"].read()).decode()
    assert stderr.endswith("CPU.\nCommand exiting with ret '2'\n")


def test_failure_message_is_the_command_s_error_line_with_the_uri_it_was_given(start_cluster, python_step, bucket):
    read_arg1 = "import sys; open(sys.argv[1]).read()"
    cluster = start_cluster([python_step("read missing", read_arg1, f"s3://{bucket}/missing/image.jpg")])

    (step,) = cluster.wait_for_steps()

    message = step["Status"]["FailureDetails"]["Message"]
    assert message.startswith("FileNotFoundError")
    assert f"s3://{bucket}/missing/image.jpg" in message


def test_step_aws_sdk_calls_reach_the_embedded_endpoint(start_cluster, python_step, s3, bucket):
    put = "import boto3, sys; boto3.client('s3').put_object(Bucket=sys.argv[1], Key='sdk.txt', Body=b'via boto3')"
    cluster = start_cluster([python_step("sdk", put, bucket)])

    cluster.wait_for_steps()

    assert s3.get_object(Bucket=bucket, Key="sdk.txt")["Body"].read() == b"via boto3"


def test_step_stdout_lands_gzipped_under_log_uri(start_cluster, python_step, s3, bucket):
    cluster = start_cluster([python_step("talk", "print('42 images featurized')")])

    (step,) = cluster.wait_for_steps()

    stdout = s3.get_object(Bucket=bucket, Key=f"logs/{cluster.id}/steps/{step['Id']}/stdout.gz")["Body"].read()
    assert gzip.decompress(stdout) == b"42 images featurized\n"


def test_cancel_and_wait_cancels_later_steps_and_leaves_the_cluster_waiting(start_cluster, python_step, s3, bucket):
    cluster = start_cluster(
        [
            python_step("fail", FAIL, action_on_failure="CANCEL_AND_WAIT"),
            python_step("after 1", PUT_ARG3_AT_ARG1_ARG2, bucket, "after/1.txt", "ran"),
            python_step("after 2", PUT_ARG3_AT_ARG1_ARG2, bucket, "after/2.txt", "ran"),
        ]
    )

    states = [step["Status"]["State"] for step in cluster.wait_for_steps()]

    assert states == ["FAILED", "CANCELLED", "CANCELLED"]
    assert cluster.wait_for_state("WAITING")["State"] == "WAITING"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="after/")


def test_a_failure_without_a_message_still_cancels_later_steps(start_cluster, python_step, s3, bucket):
    """As a job that says why on stdout only: FailureDetails with no Message must not stop the cluster's runner."""
    quiet = "import sys; print('extract_features: error: no image could be decoded'); sys.exit(2)"
    cluster = start_cluster(
        [
            python_step("quiet", quiet, action_on_failure="CANCEL_AND_WAIT"),
            python_step("after", PUT_ARG3_AT_ARG1_ARG2, bucket, "after/1.txt", "ran"),
        ]
    )

    states = [step["Status"]["State"] for step in cluster.wait_for_steps()]

    assert states == ["FAILED", "CANCELLED"]
    assert cluster.wait_for_state("WAITING")["State"] == "WAITING"


def test_a_bug_in_the_cluster_s_runner_ends_the_cluster_with_an_internal_error(
    start_cluster, python_step, bucket, monkeypatch
):
    """As EMR after an internal failure: the cluster ends with errors, its steps end, and a sensor stops polling."""

    def bug(self, cluster, step):
        raise RuntimeError("a bug in the runner")

    monkeypatch.setattr(FaultInjector, "step_started", bug)
    cluster = start_cluster(
        [
            python_step("first", PUT_ARG3_AT_ARG1_ARG2, bucket, "first.txt", "x"),
            python_step("second", PUT_ARG3_AT_ARG1_ARG2, bucket, "second.txt", "x"),
        ]
    )

    status = cluster.wait_for_state("TERMINATED_WITH_ERRORS")
    states = [step["Status"]["State"] for step in cluster.wait_for_steps()]

    assert status["StateChangeReason"]["Code"] == "INTERNAL_ERROR"
    assert "RuntimeError('a bug in the runner')" in status["StateChangeReason"]["Message"]
    assert states == ["FAILED", "CANCELLED"]


def test_cluster_runs_new_steps_after_cancel_and_wait(start_cluster, python_step, s3, bucket):
    cluster = start_cluster([python_step("fail", FAIL, action_on_failure="CANCEL_AND_WAIT")])
    cluster.wait_for_steps()

    cluster.add_steps(python_step("retry", PUT_ARG3_AT_ARG1_ARG2, bucket, "retry.txt", "ok"))

    assert [step["Status"]["State"] for step in cluster.wait_for_steps()] == ["FAILED", "COMPLETED"]


@pytest.mark.parametrize("action", ["TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"])
def test_terminating_action_on_failure_cancels_the_rest_and_terminates_with_errors(start_cluster, python_step, action):
    cluster = start_cluster([python_step("fail", FAIL, action_on_failure=action), python_step("next", "pass")])

    states = [step["Status"]["State"] for step in cluster.wait_for_steps()]

    assert states == ["FAILED", "CANCELLED"]
    status = cluster.wait_for_state("TERMINATED_WITH_ERRORS")
    assert status["StateChangeReason"]["Code"] == "STEP_FAILURE"


def test_continue_runs_the_next_step_after_a_failure(start_cluster, python_step):
    cluster = start_cluster([python_step("fail", FAIL), python_step("next", "pass")])

    assert [step["Status"]["State"] for step in cluster.wait_for_steps()] == ["FAILED", "COMPLETED"]


def test_cluster_not_kept_alive_terminates_after_its_last_step(start_cluster, python_step):
    cluster = start_cluster([python_step("only", "pass")], keep_alive=False)

    status = cluster.wait_for_state("TERMINATED", "TERMINATED_WITH_ERRORS")

    assert status["State"] == "TERMINATED"
    assert status["StateChangeReason"]["Code"] == "ALL_STEPS_COMPLETED"
    assert cluster.step_states() == ["COMPLETED"]


def test_cluster_is_running_during_a_step_and_waiting_after_it(start_cluster, python_step):
    cluster = start_cluster([python_step("nap", "import time; time.sleep(1.5)")])

    cluster.wait_for_step_state(cluster.step_ids[0], "RUNNING")
    assert cluster.status()["State"] == "RUNNING"

    cluster.wait_for_steps()
    assert cluster.wait_for_state("WAITING")["State"] == "WAITING"


def test_terminate_job_flows_kills_the_running_step_and_cancels_pending_ones(
    aws, emr, start_cluster, python_step, s3, bucket, wait_until
):
    put_pid_then_sleep = f"import os; {PUT_ARG3_AT_ARG1_ARG2.replace('sys.argv[3]', 'str(os.getpid())')}; {SLEEP}"
    cluster = start_cluster(
        [python_step("sleeper", put_pid_then_sleep, bucket, "pid.txt"), python_step("pending", "pass")]
    )
    wait_until(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="pid.txt").get("KeyCount"), what="the step to start")

    emr.terminate_job_flows(JobFlowIds=[cluster.id])

    status = cluster.wait_for_state("TERMINATED")
    assert status["StateChangeReason"]["Code"] == "USER_REQUEST"
    assert cluster.step_states() == ["CANCELLED", "CANCELLED"]
    pid = int(s3.get_object(Bucket=bucket, Key="pid.txt")["Body"].read())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_cluster_terminated_from_outside_mid_step_fails_the_run_with_the_cluster_s_reason(
    emr, start_cluster, python_step
):
    cluster = start_cluster([python_step("sleeper", SLEEP), python_step("pending", "pass")])
    step_id = cluster.step_ids[0]
    cluster.wait_for_step_state(step_id, "RUNNING")

    emr.terminate_job_flows(JobFlowIds=[cluster.id])
    cluster.wait_for_state("TERMINATED")

    # What watch_steps's trigger and report_failure make of the endpoint's answers.
    failure = find_failure(emr, cluster.id, cluster.step_ids)
    assert poll(emr, cluster.id, cluster.step_ids[-1]) == "FAILED"
    assert failure is not None
    assert failure.cause == "cluster"
    assert failure.summary() == (
        f"EMR cluster {cluster.id} TERMINATED before the run's steps completed: "
        "USER_REQUEST: Terminated by user request"
    )


def test_terminated_cluster_refuses_new_steps(start_cluster, python_step, emr):
    cluster = start_cluster([python_step("only", "pass")], keep_alive=False)
    cluster.wait_for_state("TERMINATED")

    with pytest.raises(ClientError, match="may not be modified"):
        cluster.add_steps(python_step("late", "pass"))


def test_steps_run_one_at_a_time_in_submission_order(start_cluster, python_step, s3, bucket):
    record_interval = (
        "import boto3, sys, time; start = time.time(); time.sleep(float(sys.argv[3])); "
        "boto3.client('s3').put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=f'{start} {time.time()}')"
    )
    cluster = start_cluster([python_step("first", record_interval, bucket, "order/0", "1.0")])
    cluster.add_steps(
        python_step("second", record_interval, bucket, "order/1", "0.2"),
        python_step("third", record_interval, bucket, "order/2", "0.2"),
    )
    cluster.wait_for_step_state(cluster.step_ids[0], "RUNNING")
    assert cluster.step_states()[1:] == ["PENDING", "PENDING"]

    cluster.wait_for_steps()

    intervals = [
        [float(t) for t in s3.get_object(Bucket=bucket, Key=f"order/{i}")["Body"].read().split()] for i in range(3)
    ]
    assert all(intervals[i][1] <= intervals[i + 1][0] for i in range(2))


def test_unsupported_jar_fails_with_a_clear_reason(start_cluster):
    custom_jar = {
        "Name": "custom jar",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "s3://my-jars/wordcount.jar", "Args": ["in", "out"]},
    }
    cluster = start_cluster([custom_jar])

    (step,) = cluster.wait_for_steps()

    assert step["Status"]["State"] == "FAILED"
    assert "s3://my-jars/wordcount.jar" in step["Status"]["FailureDetails"]["Message"]
    assert "command-runner.jar" in step["Status"]["FailureDetails"]["Message"]
