"""What kind of subnet the clusters launch into, and whether a cluster can work there.

The nodes need nothing from the internet (their packages come from the bucket), but they need S3, and
EMR must reach them:

- a **public** subnet routes 0.0.0.0/0 to an internet gateway; its nodes reach S3 and EMR through their
  public IPv4 addresses, so the subnet must assign them (MapPublicIpOnLaunch);
- a **private** subnet has no such route; its nodes reach S3 through a gateway endpoint (a route to
  the region's S3 prefix list: DynamoDB's, the other gateway endpoint, does not count) or a NAT
  gateway, and EMR requires a service-access security group there (the stack creates both when given
  PrivateRouteTableIds).

The subnet's route table is its explicit association, else its VPC's main table, as in EC2.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fruits_airflow.aws_codes import code_of
from fruits_airflow.config import STACK_TEMPLATE, ConfigError, PipelineConfig

log = logging.getLogger(__name__)

PUBLIC, PRIVATE = "public", "private"
_ANYWHERE = "0.0.0.0/0"


def _route_table(ec2: BaseClient, subnet: dict[str, Any]) -> dict[str, Any]:
    associated = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}])[
        "RouteTables"
    ]
    if associated:
        return associated[0]
    (main,) = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    return main


def _active(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [route for route in routes if route.get("State", "active") == "active"]


def _s3_prefix_lists(ec2: BaseClient) -> set[str]:
    """The ids of the region's AWS-managed S3 prefix list, which an S3 gateway endpoint's route targets."""
    name = f"com.amazonaws.{ec2.meta.region_name}.s3"
    found = ec2.describe_prefix_lists(Filters=[{"Name": "prefix-list-name", "Values": [name]}])["PrefixLists"]
    return {prefix_list["PrefixListId"] for prefix_list in found}


def check_subnet(ec2: BaseClient, config: PipelineConfig) -> str:
    """``public`` or ``private``: the kind of the Variable's subnet, once sure a cluster can work there.

    :raises ConfigError: in one line naming what to change, when it cannot.
    """
    subnet_id = config.subnet_id
    try:
        (subnet,) = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    except ClientError as error:
        if code_of(error) != "InvalidSubnetID.NotFound":
            raise
        raise ConfigError(
            f"Subnet {subnet_id} does not exist in {ec2.meta.region_name}: set the Variable 'fruits_pipeline' key "
            f"'subnet_id' to the stack's output SubnetId ({STACK_TEMPLATE})."
        ) from None
    routes = _active(_route_table(ec2, subnet).get("Routes", []))
    to_anywhere = [route for route in routes if route.get("DestinationCidrBlock") == _ANYWHERE]
    if any(route.get("GatewayId", "").startswith("igw-") for route in to_anywhere):
        if not subnet.get("MapPublicIpOnLaunch"):
            raise ConfigError(
                f"Subnet {subnet_id} is public (its route table sends 0.0.0.0/0 to an internet gateway) but does not "
                "auto-assign public IPv4 addresses, so its nodes could reach neither S3 nor EMR: turn on "
                "'auto-assign public IPv4 address' for it, or use a private subnet with the stack's "
                f"PrivateRouteTableIds ({STACK_TEMPLATE})."
            )
        log.info("Subnet %s is public: the nodes reach AWS through their public IPv4 addresses", subnet_id)
        return PUBLIC
    to_s3 = [route for route in to_anywhere if route.get("NatGatewayId")]
    if not to_s3 and any(route.get("DestinationPrefixListId") for route in routes):
        s3_lists = _s3_prefix_lists(ec2)
        to_s3 = [route for route in routes if route.get("DestinationPrefixListId") in s3_lists]
    if not to_s3:
        raise ConfigError(
            f"Subnet {subnet_id} is private and its route table has no route to S3 (no gateway endpoint, no NAT "
            "gateway), so its nodes could not even read their bootstrap: deploy the stack with PrivateRouteTableIds "
            f"naming that route table ({STACK_TEMPLATE}), which adds an S3 gateway endpoint."
        )
    if not config.service_access_security_group:
        raise ConfigError(
            f"Subnet {subnet_id} is private, where EMR requires a service-access security group: set the Variable "
            "'fruits_pipeline' key 'service_access_security_group' to the stack's output ServiceAccessSecurityGroup."
        )
    log.info("Subnet %s is private: the nodes reach S3 through its route table, nothing else", subnet_id)
    return PRIVATE
