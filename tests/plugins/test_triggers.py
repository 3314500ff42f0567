from __future__ import annotations

import asyncio

import pytest

from fruits_airflow.triggers import EmrStepsTrigger


@pytest.fixture
def trigger(emr_run) -> EmrStepsTrigger:
    """The deferred watch_steps's trigger on moto's EMR, polling without waiting."""
    return EmrStepsTrigger(
        job_flow_id=emr_run.cluster_id,
        step_id=emr_run.step_ids[-1],
        poll_interval=0,
        max_attempts=3,
        aws_conn_id=None,
        region_name="eu-west-1",
    )


def first_event(trigger: EmrStepsTrigger) -> dict:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger fired no event")

    return asyncio.run(first())


def test_a_cluster_ending_before_its_steps_fires_failed(trigger, emr_run):
    emr_run.end_cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", "bootstrap action 1 failed", steps=None)

    assert first_event(trigger)["status"] == "FAILED"


def test_a_cancelled_last_step_fires_failed(trigger, emr_run):
    emr_run.set_step(1, "CANCELLED")

    assert first_event(trigger)["status"] == "FAILED"


def test_completed_steps_fire_completed(trigger, emr_run):
    emr_run.set_step(0, "COMPLETED")
    emr_run.set_step(1, "COMPLETED")

    assert first_event(trigger) == {"status": "COMPLETED", "step_id": emr_run.step_ids[-1]}


def test_a_run_still_going_after_the_last_poll_fires_timed_out(trigger):
    assert first_event(trigger)["status"] == "TIMED_OUT"


def test_the_trigger_is_rebuilt_from_what_it_serializes(trigger):
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")

    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)

    assert rebuilt.serialize() == (classpath, kwargs)
    assert classpath == "fruits_airflow.triggers.EmrStepsTrigger"
