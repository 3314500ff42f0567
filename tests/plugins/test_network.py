"""check_config's look at the subnet: public with public IPv4 addresses, or private with a route to S3 and
EMR's service-access group; anything else fails in one line naming what to change."""

from __future__ import annotations

import boto3
import pytest
from botocore.client import BaseClient

from fruits_airflow.config import ConfigError, parse_config
from fruits_airflow.network import PRIVATE, PUBLIC, check_subnet
from tests.plugins.conftest import BUCKET, NETWORK, REGION


def _network(ec2: BaseClient) -> tuple[str, str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    filters = [{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    (route_table,) = ec2.describe_route_tables(Filters=filters)["RouteTables"]
    return vpc, subnet, route_table["RouteTableId"]


def private_network(ec2: BaseClient) -> dict[str, str]:
    """The Variable's network keys for a private subnet as the stack makes it: an S3 gateway endpoint on its
    route table, and a service-access group."""
    vpc, subnet, route_table = _network(ec2)
    ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.s3", VpcEndpointType="Gateway", RouteTableIds=[route_table]
    )
    group = ec2.create_security_group(GroupName="service-access", Description="EMR service access", VpcId=vpc)
    return {"subnet_id": subnet, "service_access_security_group": group["GroupId"]}


@pytest.fixture
def ec2(aws) -> BaseClient:
    return boto3.client("ec2", region_name=REGION)


def config(**network):
    return parse_config({"bucket": BUCKET, **NETWORK, **network})


def public_subnet(ec2: BaseClient, *, public_ips: bool) -> str:
    vpc, subnet, route_table = _network(ec2)
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    ec2.create_route(RouteTableId=route_table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": public_ips})
    return subnet


def test_a_private_subnet_with_the_stack_s_endpoint_and_group_works(ec2):
    assert check_subnet(ec2, config(**private_network(ec2))) == PRIVATE


def test_a_public_subnet_that_assigns_public_ips_works(ec2):
    assert check_subnet(ec2, config(subnet_id=public_subnet(ec2, public_ips=True))) == PUBLIC


def test_a_public_subnet_without_public_ips_fails_naming_the_setting(ec2):
    subnet = public_subnet(ec2, public_ips=False)

    with pytest.raises(ConfigError, match=r"auto-assign public IPv4 address") as raised:
        check_subnet(ec2, config(subnet_id=subnet))

    assert "\n" not in str(raised.value)
    assert subnet in str(raised.value)


def test_a_private_subnet_without_a_route_to_s3_fails_naming_the_stack_parameter(ec2):
    _, subnet, _ = _network(ec2)

    with pytest.raises(ConfigError, match=r"no route to S3 .*PrivateRouteTableIds"):
        check_subnet(ec2, config(subnet_id=subnet, service_access_security_group="sg-0c3"))


def test_a_private_subnet_with_only_dynamodb_s_gateway_endpoint_has_no_route_to_s3(ec2):
    vpc, subnet, route_table = _network(ec2)
    dynamodb = f"com.amazonaws.{REGION}.dynamodb"
    ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=dynamodb, VpcEndpointType="Gateway", RouteTableIds=[route_table])

    with pytest.raises(ConfigError, match=r"no route to S3 .*PrivateRouteTableIds"):
        check_subnet(ec2, config(subnet_id=subnet, service_access_security_group="sg-0c3"))


def test_a_private_subnet_behind_a_nat_gateway_reaches_s3(ec2):
    _, subnet, route_table = _network(ec2)
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    ec2.create_route(RouteTableId=route_table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)

    assert check_subnet(ec2, config(subnet_id=subnet, service_access_security_group="sg-0c3")) == PRIVATE


def test_a_private_subnet_without_a_service_access_group_fails_naming_the_key(ec2):
    network = private_network(ec2)

    with pytest.raises(ConfigError, match=r"key 'service_access_security_group'"):
        check_subnet(ec2, config(subnet_id=network["subnet_id"]))


def test_a_subnet_that_does_not_exist_fails_in_one_line(ec2):
    with pytest.raises(ConfigError, match=r"Subnet subnet-0123456789abcdef0 does not exist in eu-west-1"):
        check_subnet(ec2, config())
