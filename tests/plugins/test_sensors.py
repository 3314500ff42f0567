from __future__ import annotations

import gzip
import logging
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from botocore.stub import Stubber

from fruits_airflow.sensors import EmrStepsFailureReportingSensor

CLUSTER_ID = "j-1ABCDEFGHIJK"
STEP_IDS = ["s-EXTRACT", "s-PCA"]
LOG_URI = "s3n://fruits-test-bucket/logs/"
FAILED_EXTRACT = {
    "Id": "s-EXTRACT",
    "Name": "extract_features",
    "Status": {"State": "FAILED", "FailureDetails": {"Reason": "Unknown Error.", "Message": "Step exited with code 1"}},
}
CANCELLED_PCA = {"Id": "s-PCA", "Name": "pca", "Status": {"State": "CANCELLED"}}


@pytest.fixture
def sensor(stubbed_emr, s3, bucket):
    """The DAG's watch_steps sensor, rendered, talking to the stubbed EMR and to moto's S3."""
    emr, _ = stubbed_emr
    watch_steps = EmrStepsFailureReportingSensor(
        task_id="watch_steps",
        job_flow_id=CLUSTER_ID,
        step_ids=STEP_IDS,
        deferrable=True,
        aws_conn_id=None,
        region_name="eu-west-1",
        log_wait_seconds=0,
        stderr_tail_lines=3,
    )
    watch_steps.__dict__["hook"] = SimpleNamespace(conn=emr, conn_region_name="eu-west-1", conn_partition="aws")
    s3.put_object(
        Bucket=bucket,
        Key=f"logs/{CLUSTER_ID}/steps/s-EXTRACT/stderr.gz",
        Body=gzip.compress(b"INFO starting\nINFO loading the model\nTraceback:\nValueError: image size must be > 0\n"),
    )
    return watch_steps


def script_step(stubber: Stubber, step: dict) -> None:
    response = {"Step": step, "ResponseMetadata": {"HTTPStatusCode": 200}}
    stubber.add_response("describe_step", response, {"ClusterId": CLUSTER_ID, "StepId": step["Id"]})


def script_report(stubber: Stubber) -> None:
    stubber.add_response(
        "describe_cluster", {"Cluster": {"Id": CLUSTER_ID, "LogUri": LOG_URI}}, {"ClusterId": CLUSTER_ID}
    )
    stubber.add_response(
        "list_steps", {"Steps": [CANCELLED_PCA, FAILED_EXTRACT]}, {"ClusterId": CLUSTER_ID, "StepIds": STEP_IDS}
    )


def test_a_failed_step_fails_the_task_for_good_with_its_reason(sensor, stubbed_emr, caplog):
    _, stubber = stubbed_emr
    script_step(stubber, CANCELLED_PCA)
    script_report(stubber)

    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(AirflowFailException, match=r"EMR step extract_features \(s-EXTRACT\) FAILED: Unknown Error"),
    ):
        sensor.execute_complete({}, event={"status": "error", "message": "Waiter encountered a terminal failure"})

    assert "ValueError: image size must be > 0" in caplog.text
    assert "INFO starting" not in caplog.text


def test_a_step_failing_before_the_sensor_defers_is_reported_the_same(sensor, stubbed_emr, caplog):
    _, stubber = stubbed_emr
    script_step(stubber, CANCELLED_PCA)
    stubber.add_response(
        "describe_cluster", {"Cluster": {"Id": CLUSTER_ID, "LogUri": LOG_URI}}, {"ClusterId": CLUSTER_ID}
    )
    script_report(stubber)
    sensor._watch_last_step()

    with caplog.at_level(logging.ERROR), pytest.raises(AirflowFailException, match="extract_features"):
        sensor.poke({"ti": MagicMock()})

    assert "ValueError: image size must be > 0" in caplog.text


def test_the_last_step_is_the_one_watched(sensor, stubbed_emr):
    _, stubber = stubbed_emr
    script_step(stubber, {"Id": "s-PCA", "Name": "pca", "Status": {"State": "RUNNING"}})
    stubber.add_response(
        "describe_cluster", {"Cluster": {"Id": CLUSTER_ID, "LogUri": LOG_URI}}, {"ClusterId": CLUSTER_ID}
    )
    sensor._watch_last_step()

    assert sensor.poke({"ti": MagicMock()}) is False
    assert sensor.step_id == "s-PCA"


def test_a_completed_run_succeeds(sensor):
    assert sensor.execute_complete({}, event={"status": "success"}) is None


def test_giving_up_on_a_running_step_is_left_to_retries(sensor, stubbed_emr):
    _, stubber = stubbed_emr
    script_step(stubber, {"Id": "s-PCA", "Name": "pca", "Status": {"State": "RUNNING"}})

    with pytest.raises(AirflowException, match="in state RUNNING") as raised:
        sensor.execute_complete({}, event={"status": "error", "message": "Max attempts exceeded"})

    assert not isinstance(raised.value, AirflowFailException)


def test_no_steps_to_watch_fails_clearly(sensor):
    sensor.step_ids = []

    with pytest.raises(AirflowFailException, match="no EMR step ids to watch"):
        sensor.execute({})
