"""What a local Airflow needs in the embedded AWS endpoint before its first run: what the stack creates on AWS.

On AWS, the project's CloudFormation stack creates the bucket, the roles and the EMR security
configuration; the embedded endpoint emulates no IAM, so here it takes the bucket and the security
configuration, the latter read from the stack's own template. The demo calls ``provision``; a compose
service runs the command line, which may run again and again against the same endpoint:

    python -m tools.local_provision --endpoint-url http://127.0.0.1:4566 --bucket fruits-demo --region eu-west-1

Values the stack would refuse (a region outside the EU, a bucket name with dots) are refused here too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from tools.stack_template import StackContext, load_template, refusals

log = logging.getLogger(__name__)

# moto's account; the endpoint takes any credentials.
LOCAL_ACCOUNT_ID = "123456789012"
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
SECURITY_CONFIGURATION_TYPE = "AWS::EMR::SecurityConfiguration"


def stack_context(template: dict[str, Any], bucket: str, region: str) -> StackContext:
    """The stack as it would be deployed for ``bucket`` in ``region``, in the endpoint's account.

    :raises ValueError: naming what the stack would refuse, e.g. a region outside the EU.
    """
    context = StackContext({"BucketName": bucket, "Region": region}, region=region, account_id=LOCAL_ACCOUNT_ID)
    reasons = refusals(template, context)
    if reasons:
        raise ValueError(reasons[0])
    return context


def stack_security_configuration(template: dict[str, Any], context: StackContext) -> tuple[str, dict[str, Any]]:
    """The name and content of the stack's EMR security configuration, resolved for ``context``."""
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == SECURITY_CONFIGURATION_TYPE]
    properties = context.resolve(template, resource["Properties"])
    return properties["Name"], properties["SecurityConfiguration"]


def _create_bucket(s3: BaseClient, bucket: str, region: str) -> None:
    if bucket in {existing["Name"] for existing in s3.list_buckets()["Buckets"]}:
        log.info("Bucket %s exists already", bucket)
        return
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    log.info("Created bucket %s in %s", bucket, region)


def _create_security_configuration(emr: BaseClient, name: str, settings: dict[str, Any]) -> None:
    try:
        emr.describe_security_configuration(Name=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidRequestException":
            raise
    else:
        log.info("EMR security configuration %s exists already", name)
        return
    emr.create_security_configuration(Name=name, SecurityConfiguration=json.dumps(settings))
    log.info("Created EMR security configuration %s, as the stack's", name)


def provision(s3: BaseClient, emr: BaseClient, bucket: str, region: str) -> None:
    """Create the pipeline's bucket and the stack's EMR security configuration in ``region``, unless they exist.

    :param s3: an S3 client of the embedded endpoint.
    :param emr: an EMR client of the embedded endpoint, in ``region``.
    :param bucket: the bucket to create, named as the stack's BucketName parameter allows.
    :param region: an EU region, as the stack's Region parameter allows.
    :raises ValueError: for a bucket or region the stack would refuse; nothing is created then.
    """
    template = load_template()
    context = stack_context(template, bucket, region)
    _create_bucket(s3, bucket, region)
    _create_security_configuration(emr, *stack_security_configuration(template, context))


def _client(service: str, endpoint_url: str, region: str) -> BaseClient:
    # A few quick attempts: an endpoint that is not up should fail in seconds, not minutes.
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config, **_LOCAL_CREDENTIALS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local_provision", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True, help="the embedded endpoint, e.g. http://127.0.0.1:4566")
    parser.add_argument("--bucket", required=True, help="the pipeline's bucket, e.g. fruits-demo")
    parser.add_argument("--region", required=True, help="an EU region, e.g. eu-west-1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        s3, emr = (_client(service, args.endpoint_url, args.region) for service in ("s3", "emr"))
        provision(s3, emr, args.bucket, args.region)
    except ValueError as error:
        print(f"local_provision: error: {error}", file=sys.stderr)
        return 2
    except EndpointConnectionError:
        print(
            f"local_provision: error: nothing answers at {args.endpoint_url}; start the endpoint first "
            "(python -m local_aws serve) or fix --endpoint-url",
            file=sys.stderr,
        )
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"local_provision: error: AWS endpoint {args.endpoint_url}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
