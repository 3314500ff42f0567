"""The stack's policies and the pipeline's calls (cloudformation/calls.yaml) agree both ways.

Every call listed is granted by its policy, and every grant (each action on each resource of an Allow
statement) is needed by a call listed: a grant that no call needs, or a call that no grant allows,
fails here. Keys come from ``fruits_airflow.paths``, for a run on the shared features and for one that
reprocesses every image.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.session
import pytest
import yaml

from fruits_airflow.aws_errors import S3_OPERATION_ACTIONS
from fruits_airflow.paths import RunPaths
from tools.stack_template import REPO_ROOT

CALLS_FILE = REPO_ROOT / "cloudformation" / "calls.yaml"
RUN_ID = "manual__2026-11-21T06:00:00+00:00"
CLUSTER_ID = "j-2AXXXXXXGAPLF"
ARTIFACTS = "artifacts/0123456789ab/"
STEP_LOG = f"logs/{CLUSTER_ID}/steps/s-1XXXXXXXXXXXX/"
BOTOCORE_SERVICES = {"s3": "s3", "emr": "emr", "ec2": "ec2"}


@dataclass(frozen=True)
class Call:
    """One line of the table."""

    policy: str
    by: str
    service: str
    operation: str
    action: str
    resource: str


def load_calls() -> list[Call]:
    table = yaml.safe_load(CALLS_FILE.read_text())
    return [
        Call(policy, entry["by"], *entry["call"].split(" "), entry["action"], entry["resource"])
        for policy, entries in table.items()
        for entry in entries
    ]


CALLS = load_calls()
POLICIES = sorted({call.policy for call in CALLS})


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def resolve(bucket, arn, object_arn) -> Callable[[str], set[str]]:
    """The ARNs a table resource stands for, for both kinds of run."""
    runs = [RunPaths.for_run(bucket, RUN_ID, reprocess_all=own, weights="imagenet") for own in (False, True)]
    cluster = f"arn:aws:elasticmapreduce:eu-west-1:123456789012:cluster/{CLUSTER_ID}"

    def resolved(resource: str) -> set[str]:
        kind, _, name = resource.partition(":")
        if resource in ("*", "bucket", "cluster"):
            return {{"*": "*", "bucket": arn("Bucket"), "cluster": cluster}[resource]}
        if kind == "role":
            return {arn(name)}
        return {object_arn(name.format(**key_fields(paths))) for paths in runs}

    return resolved


def key_fields(paths: RunPaths) -> dict[str, str]:
    """What the table's keys may name in braces."""
    prefixes = ("features_prefix", "rejects_prefix", "pca_prefix", "report_prefix", "run_prefix")
    return {"artifacts": ARTIFACTS, "step_log": STEP_LOG, **{name: getattr(paths, name) for name in prefixes}}


def grants(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(sid, action, resource pattern)`` of every Allow statement."""
    return [
        (statement.get("Sid", "?"), action, resource)
        for statement in document["Statement"]
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]


def test_the_table_names_policies_of_the_stack_and_calls_of_the_aws_apis(policies):
    session = botocore.session.get_session()
    operations = {
        service: set(session.get_service_model(name).operation_names) for service, name in BOTOCORE_SERVICES.items()
    }

    assert set(POLICIES) <= set(policies)
    assert [call for call in CALLS if call.operation not in operations.get(call.service, set())] == []


@pytest.mark.parametrize("call", CALLS, ids=lambda call: f"{call.policy}: {call.by}: {call.action}")
def test_every_call_of_the_pipeline_is_granted(policies, allows, resolve, call):
    document = policies[call.policy].document

    assert [resource for resource in resolve(call.resource) if not allows(document, call.action, resource)] == []


@pytest.fixture(scope="module")
def unused_grants(resolve) -> Callable[[str, dict[str, Any]], list[tuple[str, str, str]]]:
    """The grants of ``document`` that no call of the policy ``label`` needs."""

    def unused(label: str, document: dict[str, Any]) -> list[tuple[str, str, str]]:
        needed = [(call.action, arn) for call in CALLS if call.policy == label for arn in resolve(call.resource)]
        return [
            (sid, action, pattern)
            for sid, action, pattern in grants(document)
            if not any(action == wanted and fnmatch.fnmatchcase(arn, pattern) for wanted, arn in needed)
        ]

    return unused


@pytest.mark.parametrize("label", POLICIES)
def test_every_grant_is_needed_by_a_call_of_the_pipeline(policies, unused_grants, label):
    assert unused_grants(label, policies[label].document) == []


def test_a_grant_no_call_needs_is_found(policies, unused_grants):
    document = policies["AirflowPolicy"].document
    extra = {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::acme-fruits-pipeline/logs/*"}

    unused = unused_grants("AirflowPolicy", {"Statement": [*document["Statement"], extra]})

    assert unused == [("?", "s3:DeleteObject", "arn:aws:s3:::acme-fruits-pipeline/logs/*")]


def test_the_denial_messages_name_the_action_the_table_gives_each_s3_call_of_airflow():
    s3_calls = {
        (call.operation, call.action) for call in CALLS if call.service == "s3" and call.policy == "AirflowPolicy"
    }

    assert {(operation, S3_OPERATION_ACTIONS[operation]) for operation, _ in s3_calls} == s3_calls
