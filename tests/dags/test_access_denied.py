"""Every task of the DAG that calls AWS fails in one line, naming the action and the policy, when AWS denies it."""

from __future__ import annotations

from fruits_airflow.aws_errors import ExplainsAccessDenied

# Tasks that make no AWS call (the branch between a cluster and reused outputs decides from XCom alone).
AWS_FREE = {"create_cluster_or_reuse", "reuse_outputs"}


def explains_access_denied(task) -> bool:
    """An operator with the mixin, or a @task whose function ``access_denied_explained`` wraps."""
    callable_ = getattr(task, "python_callable", None)
    return isinstance(task, ExplainsAccessDenied) or getattr(callable_, "__wrapped__", None) is not None


def test_every_task_calling_aws_explains_a_denial(dag):
    unexplained = [task.task_id for task in dag.tasks if task.task_id not in AWS_FREE]

    assert [task_id for task_id in unexplained if not explains_access_denied(dag.get_task(task_id))] == []


def test_a_task_without_it_is_found(dag):
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    plain = S3KeySensor(task_id="plain", bucket_key="s3://bucket/key")

    assert not explains_access_denied(plain)
    assert explains_access_denied(dag.get_task("wait_for_output"))
