from __future__ import annotations

import dataclasses
import json
import re
from datetime import timedelta
from unittest.mock import MagicMock

import pytest
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from fruits_airflow.paths import RunPaths
from fruits_airflow.sensors import EmrStepsSensor
from fruits_airflow.triggers import EmrStepsTrigger

BOOTSTRAP_MESSAGE = "On the master instance (i-0b0t), bootstrap action 1 returned a non-zero return code"
CONTEXT = {"ti": MagicMock()}


@pytest.fixture
def sensor(emr_run):
    """The DAG's watch_steps sensor, rendered, on moto's EMR: polls every 30 s for at most 4 h."""
    return EmrStepsSensor(
        task_id="watch_steps",
        job_flow_id=emr_run.cluster_id,
        step_ids=emr_run.step_ids,
        deferrable=True,
        poke_interval=30,
        max_attempts=480,
        aws_conn_id=None,
        region_name="eu-west-1",
    )


def test_a_bootstrap_failure_fails_the_first_poke_with_emr_s_reason(sensor, emr_run):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", BOOTSTRAP_MESSAGE)

    with pytest.raises(
        AirflowFailException, match=f"TERMINATED_WITH_ERRORS .*BOOTSTRAP_FAILURE: {re.escape(BOOTSTRAP_MESSAGE)}"
    ):
        sensor.execute(CONTEXT)


def test_a_validation_error_fails_the_run_although_emr_has_not_cancelled_the_steps_yet(sensor, emr_run):
    emr_run.end_cluster("TERMINATING", "VALIDATION_ERROR", "The security group sg-1 does not exist", steps=None)

    with pytest.raises(AirflowFailException, match=r"TERMINATING .*VALIDATION_ERROR: The security group sg-1"):
        sensor.execute(CONTEXT)


def test_a_cluster_terminated_from_outside_mid_step_fails_the_non_deferrable_sensor_at_once(sensor, emr_run):
    sensor.deferrable = False
    emr_run.end_cluster("TERMINATED", "USER_REQUEST", "Terminated by user request", steps=None)

    with pytest.raises(AirflowFailException, match=r"TERMINATED .*USER_REQUEST: Terminated by user request"):
        sensor.execute(CONTEXT)


def test_a_failed_step_fails_the_sensor_with_its_failure_details(sensor, emr_run):
    emr_run.set_step(0, "FAILED", {"Reason": "Unknown Error.", "Message": "Step exited with code 2"})
    emr_run.set_step(1, "CANCELLED")

    with pytest.raises(AirflowFailException, match=r"step extract_features \(s-\w+\) FAILED: Unknown Error"):
        sensor.execute(CONTEXT)


def test_a_failed_step_fails_the_sensor_with_the_job_s_own_line_first(sensor, emr_run, s3, bucket):
    job_error = "extract_features: error: no image could be decoded: all 3 under --images s3://b/images/ were rejected"
    paths = RunPaths(bucket, "manual__r-0123abcd", "none")
    s3.put_object(Bucket=bucket, Key=paths.job_failure_key("extract_features"), Body=json.dumps({"message": job_error}))
    emr_run.set_step(0, "FAILED", {"Reason": "Unknown Error."})
    emr_run.set_step(1, "CANCELLED")
    sensor.run_paths = dataclasses.asdict(paths)

    with pytest.raises(AirflowFailException) as failed:
        sensor.execute(CONTEXT)

    first, second, *_ = str(failed.value).splitlines()
    assert first == job_error
    assert re.fullmatch(r"EMR step extract_features \(s-\w+\) FAILED: Unknown Error\.", second)


def test_a_running_run_defers_to_the_trigger_that_also_watches_the_cluster(sensor, emr_run):
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(CONTEXT)

    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrStepsTrigger)
    assert (trigger.job_flow_id, trigger.step_id) == (emr_run.cluster_id, emr_run.step_ids[-1])
    assert deferred.value.method_name == "execute_complete"
    # The trigger gives up before Airflow's deferral timeout, so its own message is the one shown.
    assert deferred.value.timeout > timedelta(seconds=trigger.max_attempts * trigger.poll_interval)


def test_a_cluster_failure_seen_by_the_trigger_fails_the_task_with_emr_s_reason(sensor, emr_run):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "INSTANCE_FAILURE", "Instance i-0c0r was lost")

    with pytest.raises(AirflowFailException, match="INSTANCE_FAILURE: Instance i-0c0r was lost"):
        sensor.execute_complete(CONTEXT, event={"status": "FAILED", "step_id": emr_run.step_ids[-1]})


def test_giving_up_on_a_running_step_fails_the_task_without_retries(sensor, emr_run):
    with pytest.raises(AirflowFailException, match=r"did not complete within 4:00:00 \(TIMED_OUT\)"):
        sensor.execute_complete(CONTEXT, event={"status": "TIMED_OUT", "step_id": emr_run.step_ids[-1]})


def test_airflow_s_own_deferral_timeout_is_not_retried_either(sensor, emr_run):
    with pytest.raises(AirflowSensorTimeout):
        sensor.resume_execution(TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, CONTEXT)


def test_completed_steps_succeed(sensor, emr_run):
    emr_run.set_step(0, "COMPLETED")
    emr_run.set_step(1, "COMPLETED")
    sensor._watch_last_step()

    assert sensor.poke(CONTEXT) is True
    assert sensor.execute_complete(CONTEXT, event={"status": "COMPLETED"}) is None


def test_the_last_step_is_the_one_watched(sensor, emr_run):
    emr_run.set_step(0, "COMPLETED")
    sensor._watch_last_step()

    assert sensor.poke(CONTEXT) is False
    assert sensor.step_id == emr_run.step_ids[-1]


def test_no_steps_to_watch_fails_clearly(sensor):
    sensor.step_ids = []

    with pytest.raises(AirflowFailException, match="no EMR step ids to watch"):
        sensor.execute(CONTEXT)
