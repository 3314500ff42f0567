"""One embedded endpoint per test module, reached over HTTP with boto3 like any other client.

The endpoint owns moto's process-wide state while it runs, so it lives no longer than the module that
uses it: tests elsewhere that use moto in-process must not find it installed. The root conftest loads
these fixtures for every folder; tests/plugins replaces them with moto in-process under the same names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.client import BaseClient

from local_aws import EmbeddedAws


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedAws]:
    with EmbeddedAws(port=0, state_dir=tmp_path_factory.mktemp("local-aws")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3(aws: EmbeddedAws) -> BaseClient:
    return aws.client("s3")


@pytest.fixture(scope="module")
def emr(aws: EmbeddedAws) -> BaseClient:
    return aws.client("emr")
