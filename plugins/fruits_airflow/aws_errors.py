"""A denied AWS call fails its task in one line: the action to grant and the policy to extend.

Without this, a missing grant shows up as a botocore traceback deep in a hook. AWS names the action in
most denials ("... is not authorized to perform: elasticmapreduce:RunJobFlow on resource: ..."); S3
often says only "Access Denied", and a denied HEAD has no body at all (just its status, 403), so S3's
operations are mapped to their IAM actions here (``cloudformation/calls.yaml`` lists every call the
pipeline makes; a test holds the two in agreement).

A denial is not retried: the same call would be denied again until someone extends the policy. Use
``access_denied_explained`` around the calls of a task (or as its decorator), and
``ExplainsAccessDenied`` as the first base of an operator or sensor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from fruits_airflow.aws_codes import code_of
from fruits_airflow.config import AWS_CONN_ID, STACK_TEMPLATE

if TYPE_CHECKING:
    from airflow.sdk import Context

# The stack's managed policy that the role of aws_default holds (AirflowPolicy in the template).
AIRFLOW_POLICY = "fruits-pipeline-airflow"
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"})
# The IAM action of each S3 operation the Airflow side calls (AWS's Service Authorization Reference).
S3_OPERATION_ACTIONS = {
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "CompleteMultipartUpload": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "DeleteObjects": "s3:DeleteObject",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "ListObjectsV2": "s3:ListBucket",
    "PutObject": "s3:PutObject",
    "UploadPart": "s3:PutObject",
}
# The connection assumes its role first: a denial there is the role's trust, not the policy.
ASSUME_ROLE = "sts:AssumeRole"
_NAMED_ACTION = re.compile(r"not authorized to perform:? ([a-z0-9-]+:[A-Za-z0-9*]+)")


class AccessDenied(AirflowFailException):
    """AWS denied a call to the role of aws_default; the message names the action and the policy to extend."""


def denied_action(error: ClientError) -> str | None:
    """The IAM action that ``error`` denied: from AWS's message, else from the operation; None for no denial."""
    if code_of(error) not in DENIED_CODES:
        return None
    named = _NAMED_ACTION.search(error.response.get("Error", {}).get("Message") or "")
    if named:
        return named.group(1)
    return S3_OPERATION_ACTIONS.get(error.operation_name, error.operation_name)


def access_denied_message(action: str, operation: str, policy: str = AIRFLOW_POLICY) -> str:
    """One line: what was denied, and which policy to extend (or, for the role itself, which trust to fix)."""
    if action == ASSUME_ROLE:
        return (
            f"AWS denied {ASSUME_ROLE} to the credentials of the '{AWS_CONN_ID}' connection: they may not assume "
            "its role_arn; let them in the role's trust policy and grant them sts:AssumeRole on it (README, Run "
            "on AWS, step 3); retrying cannot help."
        )
    return (
        f"AWS denied {action} ({operation}) to the role of the '{AWS_CONN_ID}' connection: add {action} to the "
        f"IAM policy {policy} (AirflowPolicy in {STACK_TEMPLATE}) and update the stack; retrying cannot help."
    )


@contextmanager
def access_denied_explained(policy: str = AIRFLOW_POLICY) -> Iterator[None]:
    """Turn a denied AWS call inside the block into :class:`AccessDenied`; other errors pass unchanged.

    :param policy: the IAM policy the message tells to extend.
    """
    try:
        yield
    except (ClientError, S3UploadFailedError) as error:
        # boto3's upload_file raises S3UploadFailedError while handling the PutObject's ClientError.
        client_error = error if isinstance(error, ClientError) else error.__context__
        action = denied_action(client_error) if isinstance(client_error, ClientError) else None
        if action is None or not isinstance(client_error, ClientError):
            raise
        # from None: the botocore traceback says nothing the line does not.
        raise AccessDenied(access_denied_message(action, client_error.operation_name, policy)) from None


class ExplainsAccessDenied:
    """Mixin for an operator or sensor: a denied AWS call in ``execute``, ``poke`` or ``execute_complete`` fails
    the task with one line naming the action and the policy to extend.

    Put it first among the bases, so that it wraps everything the operator does, its own error handling
    included (a sensor that reads any AirflowException as a failed job must not see a denial first).
    """

    def execute(self, context: Context) -> Any:
        with access_denied_explained():
            return super().execute(context)  # type: ignore[misc]

    def poke(self, context: Context) -> Any:
        with access_denied_explained():
            return super().poke(context)  # type: ignore[misc]

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        with access_denied_explained():
            return super().execute_complete(context, event)  # type: ignore[misc]
