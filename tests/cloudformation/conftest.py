"""The stack's template, deployed on paper: its intrinsic functions resolved for one account and EU region.

Policies are checked as AWS evaluates them, with concrete ARNs. A policy attached to a resource (a
role's trust policy, the key's policy) names no resource or ``*`` for "this resource"; for the
linter it gets that resource's ARN, so that it is read like an identity policy on that resource.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from tools.stack_template import StackContext, load_template

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
BUCKET = "acme-fruits-pipeline"
NETWORK = {"VpcId": "vpc-0123456789abcdef0", "SubnetId": "subnet-0123456789abcdef0"}


@dataclass(frozen=True)
class PolicyDocument:
    """One policy of the stack, resolved.

    :param label: where it is, e.g. ``AirflowPolicy`` or ``EmrInstanceRole.the-pipeline-bucket-prefixes``.
    :param document: the policy as the stack deploys it.
    :param attached_to: the ARN of the resource a resource policy protects, else None.
    """

    label: str
    document: dict[str, Any]
    attached_to: str | None = None

    def for_linter(self) -> dict[str, Any]:
        """The document with the protected resource's ARN as every statement's Resource."""
        if self.attached_to is None:
            return self.document
        statements = [{**statement, "Resource": self.attached_to} for statement in self.document["Statement"]]
        return {**self.document, "Statement": statements}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def context() -> StackContext:
    """The stack deployed for BUCKET in eu-west-1, in a VPC and subnet of the account."""
    return StackContext({"BucketName": BUCKET, "Region": REGION, **NETWORK}, region=REGION, account_id=ACCOUNT_ID)


@pytest.fixture(scope="session")
def bucket() -> str:
    return BUCKET


@pytest.fixture(scope="session")
def object_arn() -> Callable[[str], str]:
    """The ARN of an object of the stack's bucket, by key."""
    return lambda key: f"arn:aws:s3:::{BUCKET}/{key}"


@pytest.fixture(scope="session")
def resources(template, context) -> dict[str, dict[str, Any]]:
    """Every resource's properties, resolved."""
    return {
        logical_id: context.resolve(template, resource.get("Properties", {}))
        for logical_id, resource in template["Resources"].items()
    }


@pytest.fixture(scope="session")
def arn(template, context) -> Callable[[str], str]:
    """The ARN of a resource, by logical id."""
    attributes = context.attributes(template)
    return lambda logical_id: attributes[f"{logical_id}.Arn"]


def _policies(resources: dict[str, dict[str, Any]], arn: Callable[[str], str]) -> Iterable[PolicyDocument]:
    for logical_id, properties in resources.items():
        if "AssumeRolePolicyDocument" in properties:
            yield PolicyDocument(f"{logical_id}.trust", properties["AssumeRolePolicyDocument"], arn(logical_id))
        if "KeyPolicy" in properties:
            yield PolicyDocument(logical_id, properties["KeyPolicy"], arn(logical_id))
        if "PolicyDocument" in properties:
            yield PolicyDocument(logical_id, properties["PolicyDocument"])
        for inline in properties.get("Policies", []):
            yield PolicyDocument(f"{logical_id}.{inline['PolicyName']}", inline["PolicyDocument"])


@pytest.fixture(scope="session")
def policies(resources, arn) -> dict[str, PolicyDocument]:
    """Every policy document of the stack, by label."""
    return {policy.label: policy for policy in _policies(resources, arn)}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in _as_list(patterns))


@pytest.fixture(scope="session")
def allows() -> Callable[[dict[str, Any], str, str], bool]:
    """Whether an identity policy lets its holder call ``action`` on ``resource``.

    Conditions are ignored (they only narrow an Allow further), so this answers "could it ever".
    """

    def check(document: dict[str, Any], action: str, resource: str) -> bool:
        def applies(statement: dict[str, Any]) -> bool:
            return _matches(statement["Action"], action) and _matches(statement["Resource"], resource)

        statements = document["Statement"]
        denied = any(s["Effect"] == "Deny" and applies(s) for s in statements)
        return not denied and any(s["Effect"] == "Allow" and applies(s) for s in statements)

    return check
