"""The project's CloudFormation template, read as data: the stack's own definition of what exists on AWS.

``tools.local_provision`` creates the same security configuration in the embedded endpoint from it,
and the tests lint and check its policies. CloudFormation's short tags (``!Ref``, ``!Sub``,
``!GetAtt``...) are read into their long form (``{"Fn::Sub": ...}``), and ``resolve`` turns them into
the concrete values a deployed stack would hold, given its parameters, account and region.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fruits_airflow.config import STACK_TEMPLATE

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / STACK_TEMPLATE

# Ref of these types gives the name property; GetAtt .Arn the ARN built from it.
_NAMED = {
    "AWS::S3::Bucket": ("BucketName", "arn:{partition}:s3:::{name}"),
    "AWS::IAM::Role": ("RoleName", "arn:{partition}:iam::{account}:role/{name}"),
    "AWS::IAM::InstanceProfile": ("InstanceProfileName", "arn:{partition}:iam::{account}:instance-profile/{name}"),
    "AWS::EMR::SecurityConfiguration": ("Name", None),
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class _TemplateLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short tags into their long form."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode), node
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long form."""
    return yaml.load(path.read_text(), Loader=_TemplateLoader)


@dataclass(frozen=True)
class StackContext:
    """What a deployed stack's intrinsic functions resolve against.

    :param parameters: the values of the template's parameters; defaults fill the others.
    :param region: the stack's region (``AWS::Region``).
    :param account_id: the stack's account (``AWS::AccountId``).
    :param partition: the stack's partition (``AWS::Partition``).
    """

    parameters: Mapping[str, str]
    region: str
    account_id: str
    partition: str = "aws"

    def refs(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """The value of ``Ref`` for every parameter, pseudo parameter and resource of ``template``."""
        defaults = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
        values = {
            **defaults,
            **self.parameters,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
        }
        for logical_id, resource in template["Resources"].items():
            values[logical_id] = self._ref(logical_id, resource, values)
        return values

    def _ref(self, logical_id: str, resource: Mapping[str, Any], values: Mapping[str, Any]) -> str:
        kind = resource["Type"]
        if kind == "AWS::KMS::Key":
            # A key id is a UUID that KMS picks; this one is shaped like it and names the resource.
            return f"{logical_id.lower()}-0000-0000-0000-000000000000"
        if kind == "AWS::EC2::SecurityGroup":
            # EC2 picks the id (Ref of a VPC security group); this one is shaped like it, one per resource.
            return f"sg-{hashlib.sha256(logical_id.encode()).hexdigest()[:17]}"
        if kind == "AWS::IAM::ManagedPolicy":
            name = resource["Properties"]["ManagedPolicyName"]
            return f"arn:{self.partition}:iam::{self.account_id}:policy/{name}"
        if kind in _NAMED:
            return resolve(resource["Properties"][_NAMED[kind][0]], values, {})
        return logical_id

    def attributes(self, template: Mapping[str, Any]) -> dict[str, str]:
        """The value of ``GetAtt X.Arn`` for every resource of ``template`` that has an ARN here."""
        refs = self.refs(template)
        fields = {"partition": self.partition, "region": self.region, "account": self.account_id}
        arns = {}
        for logical_id, resource in template["Resources"].items():
            kind = resource["Type"]
            if kind == "AWS::KMS::Key":
                arns[f"{logical_id}.Arn"] = "arn:{partition}:kms:{region}:{account}:key/{name}".format(
                    name=refs[logical_id], **fields
                )
            elif kind in _NAMED and (arn_format := _NAMED[kind][1]):
                arns[f"{logical_id}.Arn"] = arn_format.format(name=refs[logical_id], **fields)
        return arns

    def resolve(self, template: Mapping[str, Any], value: Any) -> Any:
        """``value`` (part of ``template``) with its intrinsic functions replaced by concrete values."""
        return resolve(value, self.refs(template), self.attributes(template))


def _sub(text: str, variables: Mapping[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise ValueError(f"!Sub names ${{{name}}}, which the template does not define")
        return str(variables[name])

    return _SUB_VARIABLE.sub(replace, text)


def resolve(value: Any, refs: Mapping[str, Any], attributes: Mapping[str, str]) -> Any:
    """Replace ``Ref``, ``Fn::Sub``, ``Fn::GetAtt`` and ``Fn::Join`` in ``value`` with concrete values.

    :param refs: what ``Ref`` gives for each name.
    :param attributes: what ``Fn::GetAtt`` gives, by ``"LogicalId.Attribute"``.
    :raises ValueError: for a name or function the template does not define here.
    """
    if isinstance(value, list):
        return [resolve(item, refs, attributes) for item in value]
    if not isinstance(value, dict) or not value:
        return value
    (function, argument), *others = value.items()
    if others or not (function == "Ref" or function.startswith("Fn::")):
        return {key: resolve(item, refs, attributes) for key, item in value.items()}
    if function == "Ref":
        if argument not in refs:
            raise ValueError(f"!Ref {argument}: no such parameter or resource")
        return refs[argument]
    if function == "Fn::GetAtt":
        name = ".".join(argument)
        if name not in attributes:
            raise ValueError(f"!GetAtt {name}: no such attribute here")
        return attributes[name]
    if function == "Fn::Sub":
        text, local = (argument, {}) if isinstance(argument, str) else argument
        variables = {**refs, **attributes, **{k: resolve(v, refs, attributes) for k, v in local.items()}}
        return _sub(text, variables)
    if function == "Fn::Join":
        separator, items = argument
        return separator.join(str(item) for item in resolve(items, refs, attributes))
    raise ValueError(f"{function} is not supported here")


def _holds(condition: Any, refs: Mapping[str, Any]) -> bool:
    """Evaluate a rule assertion (``Fn::Equals``, ``Fn::Contains``, ``Fn::And``, ``Fn::Or``, ``Fn::Not``)."""
    ((function, argument),) = condition.items()
    if function == "Fn::Equals":
        left, right = resolve(argument, refs, {})
        return left == right
    if function == "Fn::Contains":
        values, value = resolve(argument, refs, {})
        return value in values
    if function == "Fn::Not":
        return not _holds(argument[0], refs)
    if function in ("Fn::And", "Fn::Or"):
        results = [_holds(item, refs) for item in argument]
        return all(results) if function == "Fn::And" else any(results)
    raise ValueError(f"{function} is not supported in rules here")


def deployed(template: Mapping[str, Any], context: StackContext) -> dict[str, Any]:
    """``template`` as CloudFormation deploys it with ``context``: without the resources and outputs whose
    ``Condition`` does not hold (a public subnet's stack has no VPC endpoints)."""
    refs = context.refs(template)
    holds = {name: _holds(condition, refs) for name, condition in template.get("Conditions", {}).items()}

    def kept(section: str) -> dict[str, Any]:
        return {key: item for key, item in template.get(section, {}).items() if holds.get(item.get("Condition"), True)}

    return {**template, "Resources": kept("Resources"), "Outputs": kept("Outputs")}


def refusals(template: Mapping[str, Any], context: StackContext) -> list[str]:
    """Why CloudFormation would refuse to deploy ``template`` with ``context``: empty when it would not.

    Checks each given parameter against its AllowedValues and AllowedPattern, then every rule's assertions.
    """
    reasons = []
    for name, value in context.parameters.items():
        spec = template["Parameters"][name]
        allowed, pattern = spec.get("AllowedValues"), spec.get("AllowedPattern")
        if (allowed is not None and value not in allowed) or (pattern and not re.fullmatch(pattern, value)):
            reasons.append(f"{name} {value!r} {spec.get('ConstraintDescription', 'is not allowed')}")
    if reasons:
        return reasons
    refs = context.refs(template)
    for rule in template.get("Rules", {}).values():
        reasons += [item["AssertDescription"] for item in rule["Assertions"] if not _holds(item["Assert"], refs)]
    return reasons


def output_variable(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """A deployed stack's resolved outputs as the Variable fruits_pipeline: ``JobFlowRole`` is ``job_flow_role``."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): output["Value"] for key, output in outputs.items()}
