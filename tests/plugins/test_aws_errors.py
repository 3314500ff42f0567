"""A denied AWS call fails its task in one line naming the action and the policy to extend; other errors pass."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from unittest.mock import ANY, MagicMock

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from fruits_airflow import tasks
from fruits_airflow.aws_codes import code_of
from fruits_airflow.aws_errors import AccessDenied, access_denied_explained
from fruits_airflow.operators import EmrCreateJobFlowOperator
from fruits_airflow.s3_objects import head

REGION = "eu-west-1"
MOTO_DENIAL = "User: arn:aws:iam::123456789012:user/airflow is not authorized to perform: {action}"


@pytest.fixture
def stubbed(request):
    """A client of the service named by the test's parameter, with answers the test scripts."""

    def make(service: str):
        client = boto3.client(service, region_name=REGION)
        stubber = Stubber(client)
        stubber.activate()
        request.addfinalizer(stubber.deactivate)
        return client, stubber

    return make


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


def test_a_denial_naming_its_action_fails_the_task_naming_it_and_the_policy(monkeypatch, stubbed, variable):
    emr, stubber = stubbed("emr")
    action = "elasticmapreduce:DescribeSecurityConfiguration"
    stubber.add_client_error(
        "describe_security_configuration",
        service_error_code="AccessDeniedException",
        service_message=MOTO_DENIAL.format(action=action),
        http_status_code=400,
    )
    monkeypatch.setattr(tasks, "emr_client", lambda region: emr)

    with pytest.raises(AccessDenied) as denied:
        tasks.check_security_configuration.function(variable)

    message = one_line(denied.value)
    assert message.startswith(f"AWS denied {action} (DescribeSecurityConfiguration) to the role of the 'aws_default'")
    assert f"add {action} to the IAM policy fruits-pipeline-airflow" in message
    assert isinstance(denied.value, AirflowFailException)
    assert denied.value.__cause__ is None
    assert denied.value.__suppress_context__


def test_an_s3_denial_without_its_action_names_the_action_of_the_operation(monkeypatch, stubbed, network):
    s3, stubber = stubbed("s3")
    stubber.add_client_error("get_bucket_location", service_error_code="AccessDenied", http_status_code=403)
    monkeypatch.setattr(tasks, "s3_client", lambda region: s3)
    monkeypatch.setenv("AIRFLOW_VAR_FRUITS_PIPELINE", json.dumps({"bucket": "fruits-test-bucket", **network}))

    with pytest.raises(AccessDenied, match=r"^AWS denied s3:GetBucketLocation \(GetBucketLocation\)"):
        tasks.check_config.function()


def test_a_denied_head_has_no_body_but_names_the_action_it_needed(stubbed):
    s3, stubber = stubbed("s3")
    stubber.add_client_error("head_object", service_error_code="403", service_message="", http_status_code=403)

    with pytest.raises(AccessDenied, match=r"^AWS denied s3:GetObject \(HeadObject\)"), access_denied_explained():
        head(s3, "fruits-test-bucket", "artifacts/abc/pca.py")


def test_other_aws_errors_pass_unchanged(stubbed):
    s3, stubber = stubbed("s3")
    stubber.add_client_error("get_bucket_location", service_error_code="NoSuchBucket", http_status_code=404)

    with pytest.raises(ClientError, match="NoSuchBucket"), access_denied_explained():
        s3.get_bucket_location(Bucket="fruits-test-bucket")


def test_the_code_of_an_error_is_aws_s_or_none_when_it_gave_none():
    answered = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"}}, "X")

    assert code_of(answered) == "NoSuchBucket"
    assert code_of(ClientError({}, "HeadObject")) is None


def create_cluster_on(emr: Any) -> EmrCreateJobFlowOperator:
    """The DAG's create_cluster operator, its hook's client the test's stubbed one."""
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

    create_cluster = EmrCreateJobFlowOperator(
        task_id="create_cluster",
        job_flow_overrides={"Name": "x", "Instances": {}},
        emr_conn_id=None,
        region_name=REGION,
    )
    hook = EmrHook(aws_conn_id=None, region_name=REGION, emr_conn_id=None)
    hook.__dict__["conn"] = emr
    create_cluster.__dict__["hook"] = hook
    return create_cluster


def test_a_cluster_created_before_a_denial_still_reaches_the_teardown(stubbed):
    emr, stubber = stubbed("emr")
    created = {
        "JobFlowId": "j-1CREATED",
        "ClusterArn": "arn:aws:elasticmapreduce:eu-west-1:123456789012:cluster/j-1CREATED",
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }
    # No earlier try created the run's cluster (the operator looks for it by the run's tags first).
    stubber.add_response("list_clusters", {"Clusters": []}, {"ClusterStates": ANY})
    stubber.add_response("run_job_flow", created)
    action = "elasticmapreduce:DescribeCluster"
    stubber.add_client_error(
        "describe_cluster",
        service_error_code="AccessDeniedException",
        service_message=MOTO_DENIAL.format(action=action),
    )
    create_cluster = create_cluster_on(emr)
    ti = MagicMock()

    with pytest.raises(AccessDenied) as denied:
        create_cluster.execute({"ti": ti, "dag": SimpleNamespace(dag_id="fruits_pipeline"), "run_id": "manual__1"})

    assert one_line(denied.value).startswith(f"AWS denied {action} (DescribeCluster)")
    assert "Cluster j-1CREATED was created; the teardown ends it." in str(denied.value)
    ti.xcom_push.assert_any_call(key="return_value", value="j-1CREATED")


@pytest.mark.parametrize(("try_number", "recorded"), [(1, False), (3, True)])
def test_a_cluster_emr_rejects_is_recorded_as_a_refusal_once_no_retry_is_left(stubbed, try_number, recorded):
    emr, stubber = stubbed("emr")
    stubber.add_response("list_clusters", {"Clusters": []}, {"ClusterStates": ANY})
    rejected = "Only one AMI version and release label may be specified."
    stubber.add_client_error("run_job_flow", service_error_code="ValidationException", service_message=rejected)
    create_cluster = create_cluster_on(emr)
    ti = MagicMock(dag_id="fruits_pipeline", run_id="manual__1", task_id="create_cluster", try_number=try_number)
    ti.max_tries = 2  # retries: 2, so the third try is the last

    with pytest.raises(ClientError):
        create_cluster.execute({"ti": ti, "dag": SimpleNamespace(dag_id="fruits_pipeline"), "run_id": "manual__1"})

    pushed = [call.kwargs["value"] for call in ti.xcom_push.call_args_list if call.kwargs["key"] == "refusal"]
    if not recorded:
        assert pushed == []  # a retry may still start the cluster: the run's failure is not written yet
        return
    (refusal,) = pushed
    assert refusal["refused_by"] == "create_cluster"
    assert refusal["summary"] == (
        "create_cluster: AWS started no cluster: An error occurred (ValidationException) when calling the "
        f"RunJobFlow operation: {rejected}"
    )


def test_a_denied_assume_role_names_the_roles_trust_not_the_policy(stubbed):
    sts, stubber = stubbed("sts")
    stubber.add_client_error(
        "assume_role", "AccessDenied", MOTO_DENIAL.format(action="sts:AssumeRole"), http_status_code=403
    )

    with pytest.raises(AccessDenied) as denied, access_denied_explained():
        sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/fruits-pipeline-airflow", RoleSessionName="airflow")

    line = one_line(denied.value)
    assert line.startswith("AWS denied sts:AssumeRole to the credentials of the 'aws_default' connection")
    assert "trust policy" in line
    assert "fruits-pipeline-airflow" not in line


def test_a_denied_upload_file_is_one_line_naming_put_object(stubbed, tmp_path):
    s3, stubber = stubbed("s3")
    stubber.add_client_error("put_object", "AccessDenied", "Access Denied", http_status_code=403)
    image = tmp_path / "0_100.jpg"
    image.write_bytes(b"kiwi")

    with pytest.raises(AccessDenied) as denied, access_denied_explained():
        s3.upload_file(str(image), "fruits-test-bucket", "images/Kiwi/0_100.jpg")

    assert one_line(denied.value).startswith("AWS denied s3:PutObject (PutObject) to the role of")
