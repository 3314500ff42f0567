"""The template passes cfn-lint in every region it may be deployed in, and cfn-lint would notice a mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from tools.stack_template import TEMPLATE_PATH


@pytest.fixture(scope="module")
def eu_regions(template) -> list[str]:
    return template["Parameters"]["Region"]["AllowedValues"]


def lint(path: Path, regions: list[str]) -> list[str]:
    return [
        f"{match.rule.id} {match.message} (line {match.linenumber})"
        for match in lint_file(path, ManualArgs(regions=regions))
    ]


def test_the_template_passes_cfn_lint_in_every_eu_region(eu_regions):
    assert lint(TEMPLATE_PATH, eu_regions) == []


@pytest.mark.parametrize(
    ("mistake", "correct", "rule"),
    [
        ("SSEAlgorithm: AES256", "SSEAlgorithm: AES257", "E3030"),
        ("!GetAtt EmrServiceRole.Arn", "!GetAtt EmrServiceRol.Arn", "E1010"),
        ("ManagedPolicyName: fruits-pipeline-airflow", "ManagedPolicyNam: fruits-pipeline-airflow", "E3002"),
    ],
    ids=["bad encryption algorithm", "unknown resource", "unknown property"],
)
def test_cfn_lint_catches_a_broken_copy(tmp_path, eu_regions, mistake, correct, rule):
    text = TEMPLATE_PATH.read_text()
    assert mistake in text
    broken = tmp_path / TEMPLATE_PATH.name
    broken.write_text(text.replace(mistake, correct, 1))

    assert any(finding.startswith(rule) for finding in lint(broken, eu_regions[:1]))
