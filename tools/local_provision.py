"""What a local Airflow needs in the embedded AWS endpoint before its first run: what the stack creates on AWS.

On AWS, the project's CloudFormation stack creates the bucket, the roles, the Airflow policy, the EMR
security configuration and the clusters' security groups; the operator tags a VPC and subnet and creates
the role Airflow assumes (docs/aws.md, "Deploy, step by step", steps 1 and 3). Here the same, read from
the stack's own template, as the endpoint's account administrator: the bucket, the security
configuration, the security groups in a VPC and subnet tagged as step 1 tags them, and IAM
(:func:`provision_iam`), which the endpoint enforces on every later request. ``provision`` returns the
stack's outputs as the Variable's keys: the network's ids are EC2's, new each time the endpoint starts.
The demo calls ``provision``; a compose service runs the command line, which may run again and again
against the same endpoint and prints the Variable:

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

from fruits_airflow.aws_codes import code_of
from fruits_airflow.cluster import EMR_MANAGED_POLICIES_TAG
from local_aws.iam_enforcement import ACCOUNT_ID, ADMIN, AIRFLOW_HOST
from tools.stack_template import StackContext, deployed, load_template, output_variable, refusals, resolve

log = logging.getLogger(__name__)

LOCAL_ACCOUNT_ID = ACCOUNT_ID
# The role aws_default assumes, as docs/aws.md's step 3 creates it on AWS: the stack's Airflow policy and nothing else.
AIRFLOW_ROLE = "fruits-pipeline-airflow"
AIRFLOW_ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{AIRFLOW_ROLE}"
SECURITY_CONFIGURATION_TYPE = "AWS::EMR::SecurityConfiguration"
SECURITY_GROUP_TYPE = "AWS::EC2::SecurityGroup"
VPC_ENDPOINT_TYPE = "AWS::EC2::VPCEndpoint"
# The network docs/aws.md's step 1 tags on AWS: here, a VPC of its own, found again by its name.
NETWORK_NAME = "fruits-pipeline-local"
VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.42.0.0/24"
_LOGICAL_ID_TAG = "fruits-pipeline:logical-id"


def stack_context(
    template: dict[str, Any], bucket: str, region: str, network: dict[str, str] | None = None
) -> StackContext:
    """The stack as it would be deployed for ``bucket`` in ``region``, in the endpoint's account.

    :param network: the VpcId, SubnetId and PrivateRouteTableIds parameters, once the network exists.
    :raises ValueError: naming what the stack would refuse, e.g. a region outside the EU.
    """
    parameters = {"BucketName": bucket, "Region": region, **(network or {})}
    context = StackContext(parameters, region=region, account_id=LOCAL_ACCOUNT_ID)
    reasons = refusals(template, context)
    if reasons:
        raise ValueError(reasons[0])
    return context


def stack_security_configuration(template: dict[str, Any], context: StackContext) -> tuple[str, dict[str, Any]]:
    """The name and content of the stack's EMR security configuration, resolved for ``context``."""
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == SECURITY_CONFIGURATION_TYPE]
    properties = context.resolve(template, resource["Properties"])
    return properties["Name"], properties["SecurityConfiguration"]


def _create_bucket(s3: BaseClient, bucket: str, region: str, template: dict[str, Any]) -> None:
    """The bucket, versioned as the stack's is (the endpoint keeps no bucket settings across restarts).

    Its lifecycle rules are not applied: the embedded endpoint expires nothing.
    """
    if bucket in {existing["Name"] for existing in s3.list_buckets()["Buckets"]}:
        log.info("Bucket %s exists already", bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        log.info("Created bucket %s in %s", bucket, region)
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    versioning = resource["Properties"].get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning["Status"]})


def _create_security_configuration(emr: BaseClient, name: str, settings: dict[str, Any]) -> None:
    try:
        emr.describe_security_configuration(Name=name)
    except ClientError as error:
        if code_of(error) != "InvalidRequestException":
            raise
    else:
        log.info("EMR security configuration %s exists already", name)
        return
    emr.create_security_configuration(Name=name, SecurityConfiguration=json.dumps(settings))
    log.info("Created EMR security configuration %s, as the stack's", name)


def _tagged(resource_type: str, tags: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": tags}]


def _first_id(found: list[dict[str, Any]], id_key: str) -> str | None:
    return found[0][id_key] if found else None


def provision_network(ec2: BaseClient) -> dict[str, str]:
    """A VPC and a subnet tagged for AmazonEMRServicePolicy_v2, as docs/aws.md's step 1 tags them; kept if there.

    :returns: the stack's VpcId and SubnetId parameters, and PrivateRouteTableIds: the subnet is private
        (no internet gateway), as the endpoint's nodes have no internet, and its route table is the VPC's main.
    """
    name_filter = [{"Name": "tag:Name", "Values": [NETWORK_NAME]}]
    tags = [EMR_MANAGED_POLICIES_TAG, {"Key": "Name", "Value": NETWORK_NAME}]
    vpc_id = _first_id(ec2.describe_vpcs(Filters=name_filter)["Vpcs"], "VpcId")
    if vpc_id is None:
        vpc_id = ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=_tagged("vpc", tags))["Vpc"]["VpcId"]
        log.info("Created VPC %s, tagged for EMR", vpc_id)
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    subnet_id = _first_id(ec2.describe_subnets(Filters=name_filter + vpc_filter)["Subnets"], "SubnetId")
    if subnet_id is None:
        created = ec2.create_subnet(VpcId=vpc_id, CidrBlock=SUBNET_CIDR, TagSpecifications=_tagged("subnet", tags))
        subnet_id = created["Subnet"]["SubnetId"]
        log.info("Created subnet %s, tagged for EMR", subnet_id)
    main_filter = [*vpc_filter, {"Name": "association.main", "Values": ["true"]}]
    (route_table,) = ec2.describe_route_tables(Filters=main_filter)["RouteTables"]
    return {"VpcId": vpc_id, "SubnetId": subnet_id, "PrivateRouteTableIds": route_table["RouteTableId"]}


def provision_vpc_endpoints(
    ec2: BaseClient, template: dict[str, Any], context: StackContext, groups: dict[str, str]
) -> None:
    """The stack's VPC endpoints (a private subnet's S3 gateway and KMS interface), as the template defines
    them; kept if there. Moto adds the gateway's route to S3's prefix list, as EC2 does."""
    refs = {**context.refs(template), **groups}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != VPC_ENDPOINT_TYPE:
            continue
        properties = resolve(resource["Properties"], refs, context.attributes(template))
        filters = [
            {"Name": "vpc-id", "Values": [properties["VpcId"]]},
            {"Name": "service-name", "Values": [properties["ServiceName"]]},
        ]
        if ec2.describe_vpc_endpoints(Filters=filters)["VpcEndpoints"]:
            continue
        route_tables = properties.get("RouteTableIds", [])
        request = {
            "VpcId": properties["VpcId"],
            "ServiceName": properties["ServiceName"],
            "VpcEndpointType": properties["VpcEndpointType"],
            "RouteTableIds": route_tables.split(",") if isinstance(route_tables, str) else route_tables,
            "SubnetIds": properties.get("SubnetIds", []),
            "SecurityGroupIds": properties.get("SecurityGroupIds", []),
        }
        if "PolicyDocument" in properties:
            request["PolicyDocument"] = json.dumps(properties["PolicyDocument"])
        created = ec2.create_vpc_endpoint(**{key: value for key, value in request.items() if value != []})
        log.info("Created VPC endpoint %s (%s), as the stack's", created["VpcEndpoint"]["VpcEndpointId"], logical_id)


def provision_security_groups(ec2: BaseClient, template: dict[str, Any], context: StackContext) -> dict[str, str]:
    """The stack's security groups, created in its VpcId as the template defines them; kept if there.

    :returns: each group's id, by the template's logical id.
    """
    groups = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != SECURITY_GROUP_TYPE:
            continue
        properties = context.resolve(template, resource["Properties"])
        tags = [*properties.get("Tags", []), {"Key": _LOGICAL_ID_TAG, "Value": logical_id}]
        filters = [
            {"Name": "vpc-id", "Values": [properties["VpcId"]]},
            {"Name": f"tag:{_LOGICAL_ID_TAG}", "Values": [logical_id]},
        ]
        group_id = _first_id(ec2.describe_security_groups(Filters=filters)["SecurityGroups"], "GroupId")
        if group_id is None:
            group_id = ec2.create_security_group(
                GroupName=f"{NETWORK_NAME}-{logical_id}",
                Description=properties["GroupDescription"],
                VpcId=properties["VpcId"],
                TagSpecifications=_tagged("security-group", tags),
            )["GroupId"]
            log.info("Created security group %s (%s), as the stack's", group_id, logical_id)
        groups[logical_id] = group_id
    return groups


def _exists(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as error:
        if code_of(error) != "NoSuchEntity":
            raise
        return False
    return True


def _put_role(iam: BaseClient, properties: dict[str, Any]) -> None:
    """The role with its trust policy and inline policies as ``properties`` define them; AWS managed policies
    (``ManagedPolicyArns``) are left out: the endpoint has none, and nothing here runs as the service role."""
    name, trust = properties["RoleName"], json.dumps(properties["AssumeRolePolicyDocument"])
    if _exists(iam.get_role, RoleName=name):
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
    else:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, Description=properties.get("Description", ""))
        log.info("Created role %s, as the stack's", name)
    for policy in properties.get("Policies", []):
        iam.put_role_policy(
            RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
        )


def _put_instance_profile(iam: BaseClient, properties: dict[str, Any]) -> None:
    name = properties["InstanceProfileName"]
    if not _exists(iam.get_instance_profile, InstanceProfileName=name):
        iam.create_instance_profile(InstanceProfileName=name)
        for role in properties["Roles"]:
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        log.info("Created instance profile %s, as the stack's", name)


def put_managed_policy(iam: BaseClient, properties: dict[str, Any]) -> str:
    """The managed policy, its default version the template's document; returns its ARN."""
    name, document = properties["ManagedPolicyName"], json.dumps(properties["PolicyDocument"])
    arn = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:policy/{name}"
    if not _exists(iam.get_policy, PolicyArn=arn):
        iam.create_policy(PolicyName=name, PolicyDocument=document, Description=properties.get("Description", ""))
        log.info("Created managed policy %s, as the stack's", name)
        return arn
    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=document, SetAsDefault=True)
    return arn


def _put_airflow_role(iam: BaseClient, policy_arn: str) -> None:
    """docs/aws.md's step 3: a role holding the Airflow policy alone, which Airflow's host's principal may assume."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": AIRFLOW_HOST.arn}, "Action": "sts:AssumeRole"}],
    }
    if not _exists(iam.get_user, UserName=AIRFLOW_HOST.name):  # built into the embedded endpoint, not into moto
        iam.create_user(UserName=AIRFLOW_HOST.name)
    _put_role(iam, {"RoleName": AIRFLOW_ROLE, "AssumeRolePolicyDocument": trust})
    iam.attach_role_policy(RoleName=AIRFLOW_ROLE, PolicyArn=policy_arn)
    assume = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": AIRFLOW_ROLE_ARN}],
    }
    iam.put_user_policy(
        UserName=AIRFLOW_HOST.name, PolicyName="assume-the-airflow-role", PolicyDocument=json.dumps(assume)
    )


def provision_iam(iam: BaseClient, template: dict[str, Any], context: StackContext) -> None:
    """The stack's roles, instance profile and Airflow policy, and the role that aws_default assumes; kept if there,
    their policies updated to the template's."""
    managed_policies = []
    for kind, put in (("AWS::IAM::Role", _put_role), ("AWS::IAM::InstanceProfile", _put_instance_profile)):
        for resource in template["Resources"].values():
            if resource["Type"] == kind:
                put(iam, context.resolve(template, resource["Properties"]))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::ManagedPolicy":
            managed_policies.append(put_managed_policy(iam, context.resolve(template, resource["Properties"])))
    (airflow_policy,) = managed_policies
    _put_airflow_role(iam, airflow_policy)


def provision(
    s3: BaseClient, emr: BaseClient, ec2: BaseClient, iam: BaseClient, bucket: str, region: str
) -> dict[str, str]:
    """Create what the stack and docs/aws.md's steps 1 and 3 create in ``region``, unless it exists; the Variable.

    :param s3: an S3 client of the embedded endpoint, as the account's administrator (so are the others).
    :param emr: an EMR client of the embedded endpoint, in ``region``.
    :param ec2: an EC2 client of the embedded endpoint, in ``region``.
    :param iam: an IAM client of the embedded endpoint.
    :param bucket: the bucket to create, named as the stack's BucketName parameter allows.
    :param region: an EU region, as the stack's Region parameter allows.
    :returns: the stack's outputs as the keys of the Variable fruits_pipeline (bucket, subnet_id...).
    :raises ValueError: for a bucket or region the stack would refuse; nothing is created then.
    """
    template = load_template()
    context = stack_context(template, bucket, region)
    _create_bucket(s3, bucket, region, template)
    _create_security_configuration(emr, *stack_security_configuration(template, context))
    context = stack_context(template, bucket, region, provision_network(ec2))
    template = deployed(template, context)
    groups = provision_security_groups(ec2, template, context)
    provision_vpc_endpoints(ec2, template, context, groups)
    provision_iam(iam, template, context)
    outputs = resolve(template["Outputs"], {**context.refs(template), **groups}, context.attributes(template))
    return output_variable(outputs)


def _client(service: str, endpoint_url: str, region: str) -> BaseClient:
    # A few quick attempts: an endpoint that is not up should fail in seconds, not minutes.
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config, **ADMIN.keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local_provision", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True, help="the embedded endpoint, e.g. http://127.0.0.1:4566")
    parser.add_argument("--bucket", required=True, help="the pipeline's bucket, e.g. fruits-demo")
    parser.add_argument("--region", required=True, help="an EU region, e.g. eu-west-1")
    parser.add_argument(
        "--variable",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="other keys of the printed Variable, e.g. images_dir=/opt/airflow/landing weights=none",
    )
    args = parser.parse_args(argv)
    extra = dict(item.partition("=")[::2] for item in args.variable)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        s3, emr, ec2, iam = (
            _client(service, args.endpoint_url, args.region) for service in ("s3", "emr", "ec2", "iam")
        )
        variable = provision(s3, emr, ec2, iam, args.bucket, args.region)
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
    print(json.dumps({**variable, **extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
