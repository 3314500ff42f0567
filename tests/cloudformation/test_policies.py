"""Every policy of the stack passes parliament, and none pairs a wildcard action with a wildcard resource."""

from __future__ import annotations

import copy
import json
import warnings
from typing import Any

import pytest

# parliament 1.6 imports the deprecated pkg_resources and compiles regexes with invalid escapes.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from parliament import analyze_policy_string

POLICY_LABELS = [
    "BucketPolicy",
    "EmrServiceRole.trust",
    "EmrServiceRole.pass-the-instance-role-to-ec2",
    "EmrInstanceRole.trust",
    "EmrInstanceRole.the-pipeline-bucket-prefixes",
    "LocalDiskKey",
    "AirflowPolicy",
    "S3GatewayEndpoint",
]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parliament_findings(document: dict[str, Any]) -> list[str]:
    policy = analyze_policy_string(json.dumps(document))
    return [f"{finding.issue}: {finding.detail}" for finding in policy.findings]


def wildcard_pairs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements that grant or deny a wildcard action on a wildcard resource."""
    return [
        statement
        for statement in document["Statement"]
        if "*" in as_list(statement.get("Resource", []))
        and any("*" in action for action in as_list(statement["Action"]))
    ]


def test_the_stack_has_exactly_these_policies(policies):
    assert sorted(policies) == sorted(POLICY_LABELS)


@pytest.mark.parametrize("label", POLICY_LABELS)
def test_every_policy_passes_parliament(policies, label):
    assert parliament_findings(policies[label].for_linter()) == []


def test_parliament_flags_a_mistyped_action_or_resource(policies):
    broken = copy.deepcopy(policies["AirflowPolicy"].document)
    broken["Statement"][0]["Action"] = "elasticmapreduce:RunJobFlows"
    broken["Statement"][-1]["Resource"] = "arn:aws:s3:::acme-fruits-pipeline"

    issues = {finding.split(":")[0] for finding in parliament_findings(broken)}

    assert {"UNKNOWN_ACTION", "RESOURCE_MISMATCH"} <= issues


@pytest.mark.parametrize("label", POLICY_LABELS)
def test_no_statement_pairs_a_wildcard_action_with_a_wildcard_resource(policies, label):
    assert wildcard_pairs(policies[label].document) == []


@pytest.mark.parametrize("action", ["*", "s3:*", "kms:Describe*"])
def test_the_wildcard_check_catches_a_wildcard_action_on_every_resource(action):
    document = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", action], "Resource": "*"}]}

    assert wildcard_pairs(document) == document["Statement"]


def test_the_only_deny_refuses_every_request_without_tls(policies, arn):
    (statement,) = policies["BucketPolicy"].document["Statement"]

    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Resource"] == [arn("Bucket"), f"{arn('Bucket')}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(
    ("role", "service"),
    [("EmrServiceRole", "elasticmapreduce.amazonaws.com"), ("EmrInstanceRole", "ec2.amazonaws.com")],
)
def test_each_role_trusts_only_its_service(policies, role, service):
    (statement,) = policies[f"{role}.trust"].document["Statement"]

    assert statement["Principal"] == {"Service": service}
    assert statement["Action"] == "sts:AssumeRole"


def test_emr_assumes_its_role_only_for_this_account_and_region(policies):
    (statement,) = policies["EmrServiceRole.trust"].document["Statement"]

    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:elasticmapreduce:eu-west-1:123456789012:*"},
    }


def test_only_the_two_emr_roles_use_the_local_disk_key(policies, arn):
    principals = {
        principal
        for statement in policies["LocalDiskKey"].document["Statement"]
        if not any(action.startswith(("kms:Put", "kms:Schedule")) for action in statement["Action"])
        for principal in as_list(statement["Principal"]["AWS"])
    }

    assert principals == {arn("EmrInstanceRole"), arn("EmrServiceRole")}
