"""IAM on the embedded endpoint: every request is authorized as AWS would, by moto's IAM evaluator.

Moto finds each request's principal (an IAM user by its access key, an assumed role's session by its
key and token) and evaluates the principal's identity policies once IAM authentication is on
(``INITIAL_NO_AUTH_ACTION_COUNT``). :func:`iam_enforced` turns it on for the life of one endpoint, with
two built-in IAM users whose dummy keys are fixed, so that configuration files can name them:

- :data:`ADMIN`, the account's administrator (keys ``local``/``local``): what provisions the endpoint as
  an administrator deploys the stack on AWS, and the endpoint's own clients (tests, the demo's copy of
  the outputs, the step logs that EMR's log pusher writes);
- :data:`AIRFLOW_HOST`, what Airflow's machine runs as (keys ``local-endpoint``/``local-endpoint``), as
  an EC2 instance role or ECS task role on AWS: no permission of its own; provisioning lets it assume
  the role that holds the stack's Airflow policy (docs/aws.md, Deploy, step by step: step 3).

Where moto falls short of AWS, this module and :mod:`local_aws.emr_emulation` fill in:

- Signatures are not checked: moto recomputes them with botocore, which disagrees with the AWS SDK for
  Java v1 of Hadoop's S3A on every request. The access key (and an assumed role's session token, which
  moto does compare) still decides who the principal is, which is what authorization needs.
- A bucket that does not exist: S3 answers NoSuchBucket (404) to any principal, granted or not (a 403
  says the bucket exists and is someone else's); moto authorizes first and answers AccessDenied, so
  :func:`iam_enforced` makes S3 look the bucket up before it authorizes.
- DeleteObjects: moto authorizes ``s3:DeleteObject`` on the bucket and denies every key when that
  fails; AWS authorizes each key, which :func:`iam_enforced` does instead.
- A cluster's nodes work with the instance profile's role that RunJobFlow names: :func:`node_credentials`
  assumes it, and the steps get that session's keys.
- The actions RunJobFlow implies (tagging, auto-termination, passing the two roles, the request tags'
  condition) are checked with :func:`authorize` by the EMR emulation.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto import settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError
from moto.core.responses import BaseResponse
from moto.iam.access_control import IAMPolicy, IAMRequest, IAMRequestBase, PermissionResult
from moto.iam.exceptions import NotFoundException
from moto.iam.models import IAMBackend, iam_backends
from moto.s3.exceptions import BucketAccessDeniedError
from moto.s3.responses import S3Response
from moto.sts.models import sts_backends

ACCOUNT_ID = DEFAULT_ACCOUNT_ID
_ALLOW_EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
NODE_SESSION_NAME = "emr-node"


@dataclass(frozen=True)
class BuiltinUser:
    """An IAM user the endpoint creates at start, with fixed dummy keys."""

    name: str
    access_key_id: str
    secret_access_key: str
    policy: Mapping[str, Any] | None = field(default=None)

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT_ID}:user/{self.name}"

    @property
    def keys(self) -> dict[str, str]:
        """As boto3 clients take them."""
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}


ADMIN = BuiltinUser("local-admin", "local", "local", _ALLOW_EVERYTHING)
AIRFLOW_HOST = BuiltinUser("local-airflow-host", "local-endpoint", "local-endpoint")


def _iam() -> IAMBackend:
    return iam_backends[ACCOUNT_ID]["aws"]


def _create(user: BuiltinUser) -> None:
    iam = _iam()
    iam.create_user(region_name="global", user_name=user.name)
    if user.policy is not None:
        iam.put_user_policy(user.name, "endpoint-builtin", json.dumps(user.policy))
    key = iam.create_access_key(user.name)
    key.access_key_id, key.secret_access_key = user.access_key_id, user.secret_access_key


@contextmanager
def iam_enforced() -> Iterator[None]:
    """Create the built-in users and authorize every later request, for the life of the block.

    Moto's IAM, like the rest of its state, is process-wide: call this after moto's backends are reset.
    """
    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    for user in (ADMIN, AIRFLOW_HOST):
        _create(user)
    settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = 0, 0
    S3Response._bucket_response_delete_keys = _delete_keys_authorized_one_by_one
    S3Response._authenticate_and_authorize_s3_action = _bucket_found_then_authorized
    IAMRequestBase.check_signature = _signature_not_checked
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = saved
        S3Response._bucket_response_delete_keys = _MOTO_DELETE_KEYS
        S3Response._authenticate_and_authorize_s3_action = _MOTO_AUTHORIZE_S3
        IAMRequestBase.check_signature = _MOTO_CHECK_SIGNATURE


def _signature_not_checked(self: IAMRequestBase) -> None:
    """See the module docstring: S3A's signatures would all fail moto's check."""


_MOTO_CHECK_SIGNATURE = IAMRequestBase.check_signature


def _delete_keys_authorized_one_by_one(self: S3Response, bucket_name: str, authenticated: bool = True) -> Any:
    """DeleteObjects with each key authorized as ``s3:DeleteObject`` on its own ARN, as AWS does.

    Moto calls this with ``authenticated=False`` when the bucket's ARN is not granted the action. Then,
    if every key is granted, all are deleted; otherwise none is, and each is reported AccessDenied (AWS
    would still delete the granted ones).
    """
    if not authenticated:
        keys = [key.text or "" for key in ElementTree.fromstring(self.body).findall("{*}Object/{*}Key")]
        try:
            for key in keys:
                self._authenticate_and_authorize_s3_action(bucket_name=bucket_name, key_name=key)
        except BucketAccessDeniedError:
            pass
        else:
            authenticated = True
    return _MOTO_DELETE_KEYS(self, bucket_name, authenticated=authenticated)


_MOTO_DELETE_KEYS = S3Response._bucket_response_delete_keys


def _bucket_found_then_authorized(
    self: S3Response, bucket_name: str | None = None, key_name: str | None = None
) -> None:
    """NoSuchBucket for a bucket that does not exist, whoever asks, as S3 does; then moto's authorization.

    CreateBucket is the one call on a bucket that does not exist yet.
    """
    if bucket_name and self.data.get("Action") != "CreateBucket":
        self.backend.get_bucket(bucket_name)  # MissingBucket: NoSuchBucket, 404
    _MOTO_AUTHORIZE_S3(self, bucket_name=bucket_name, key_name=key_name)


_MOTO_AUTHORIZE_S3 = S3Response._authenticate_and_authorize_s3_action


class NodeRoleMissingError(Exception):
    """The cluster's instance profile, or its role, does not exist in the endpoint."""


def node_credentials(instance_profile: str, region: str) -> dict[str, str]:
    """The ``AWS_*`` keys of a session of the role in ``instance_profile``, as a node's metadata service gives them.

    :raises NodeRoleMissingError: naming the instance profile, when it or its role does not exist.
    """
    try:
        roles = _iam().get_instance_profile(instance_profile).roles
    except NotFoundException:
        roles = []
    if not roles:
        raise NodeRoleMissingError(
            f"The cluster's JobFlowRole {instance_profile!r} is no instance profile with a role in the endpoint; "
            "create it first (python -m tools.local_provision creates the stack's)."
        )
    session = sts_backends[ACCOUNT_ID]["aws"].assume_role(
        region_name=region,
        role_session_name=NODE_SESSION_NAME,
        role_arn=roles[0].arn,
        policy="",
        duration=12 * 3600,
        external_id="",
    )
    return {
        "AWS_ACCESS_KEY_ID": session.access_key_id,
        "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
        "AWS_SESSION_TOKEN": session.session_token,
    }


def is_node_session(access_key_id: str) -> bool:
    """Whether ``access_key_id`` is a node's, a session that :func:`node_credentials` gave."""
    return any(
        role.access_key_id == access_key_id and role.session_name == NODE_SESSION_NAME
        for role in sts_backends[ACCOUNT_ID]["aws"].assumed_roles
    )


@dataclass(frozen=True)
class ImpliedAction:
    """An action AWS authorizes within another call (RunJobFlow's tags, roles...), with its request context."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


class _RequestContext(dict[str, str]):
    """Condition keys of the request; an ``aws:RequestTag/`` key the request lacks is present and empty.

    Moto's evaluator skips a condition whose key it is not given; AWS fails a StringEquals on a missing key.
    """

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and key.startswith("aws:RequestTag/"))

    def __missing__(self, key: str) -> str:
        return ""

    def __bool__(self) -> bool:
        return True


def enforcing() -> bool:
    """Whether moto authorizes requests now (it counts the requests it lets through before it starts)."""
    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


def authorize(response: BaseResponse, implied: list[ImpliedAction]) -> None:
    """Authorize ``implied`` for the principal that signed the request ``response`` answers, with moto's evaluator.

    :raises AccessDeniedError: for the first action the principal's policies do not allow.
    """
    request = IAMRequest(
        account_id=response.current_account,
        method=response.method,
        path=response.raw_path,
        data=response.data,
        body=response.raw_body,
        headers=response.headers,
        action=response._get_action(),
    )
    policies = request._access_key.collect_policies()
    for item in implied:
        results = [
            IAMPolicy(policy).is_action_permitted(item.action, item.resource, None, _RequestContext(item.context))
            for policy in policies
        ]
        if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
            raise AccessDeniedError(user_arn=request._access_key.arn, action=item.action)
