"""One real spark-submit step: the script, its --py-files and its input come from S3, its parquet goes back."""

from __future__ import annotations

import gzip
import zipfile

import pyarrow.parquet as pq
import pytest

# Spark starts inside the endpoint's step runner, out of sight of the fixtures that sort tests.
pytestmark = pytest.mark.spark

JOB = """
import sys

from pyspark.sql import SparkSession

from shout import shout

spark = SparkSession.builder.appName("shout").getOrCreate()
spark.read.text(sys.argv[1]).selectExpr(f"{shout('value')} AS value").write.parquet(sys.argv[2])
spark.stop()
"""
SHOUT = "def shout(column):\n    return f'upper({column})'\n"


def test_spark_submit_step_reads_s3_input_and_writes_parquet_with_success_marker(start_cluster, s3, bucket, tmp_path):
    (tmp_path / "shout.py").write_text(SHOUT)
    with zipfile.ZipFile(tmp_path / "deps.zip", "w") as deps:
        deps.write(tmp_path / "shout.py", "shout.py")
    s3.put_object(Bucket=bucket, Key="code/job.py", Body=JOB.encode())
    s3.upload_file(str(tmp_path / "deps.zip"), bucket, "code/deps.zip")
    s3.put_object(Bucket=bucket, Key="images/Apple Red 1/labels.txt", Body=b"ripe\nfresh\n")
    spark_step = {
        "Name": "shout",
        "ActionOnFailure": "TERMINATE_CLUSTER",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "cluster",
                "--conf",
                "spark.sql.shuffle.partitions=2",
                "--py-files",
                f"s3://{bucket}/code/deps.zip",
                f"s3://{bucket}/code/job.py",
                f"s3://{bucket}/images/Apple Red 1/",
                f"s3://{bucket}/shouted/",
            ],
        },
    }
    cluster = start_cluster([spark_step], keep_alive=False)

    (step,) = cluster.wait_for_steps(timeout=120)

    assert step["Status"]["State"] == "COMPLETED", step["Status"].get("FailureDetails")
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix="shouted/")["Contents"]]
    assert "shouted/_SUCCESS" in keys
    assert not [key for key in keys if key.endswith(".crc")]
    values = []
    for key in keys:
        if key.endswith(".parquet"):
            s3.download_file(bucket, key, str(tmp_path / "part.parquet"))
            values += pq.read_table(tmp_path / "part.parquet").column("value").to_pylist()
    assert sorted(values) == ["FRESH", "RIPE"]


NODE_PYTHON_JOB = """
import sys

from pyspark.sql import SparkSession

print("driver python:", sys.executable)
spark = SparkSession.builder.appName("needs-numpy").getOrCreate()
spark.sparkContext.parallelize([1], 1).map(lambda x: __import__("numpy").sqrt(x)).collect()
"""


def test_pyspark_runs_with_the_python_the_cluster_names_which_lacks_a_package_the_job_needs(
    start_cluster, emr, s3, bucket
):
    # The bootstrap builds a bare virtualenv where the cluster's configuration names its Python: pyspark
    # still runs in it (from Spark's own zip, as on EMR), and a job's import of numpy fails there.
    s3.put_object(Bucket=bucket, Key="code/job.py", Body=NODE_PYTHON_JOB.encode())
    s3.put_object(
        Bucket=bucket,
        Key="bootstrap/bare.sh",
        Body=b'#!/bin/sh\nset -e\n[ -x "$FRUITS_PIPELINE_HOME/bare/bin/python" ] || '
        b'python3.11 -m venv --without-pip "$FRUITS_PIPELINE_HOME/bare"\n',
    )
    node_python = "/mnt/fruits-pipeline/bare/bin/python"
    cluster = start_cluster(
        [
            {
                "Name": "needs-numpy",
                "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", f"s3://{bucket}/code/job.py"]},
            }
        ],
        BootstrapActions=[{"Name": "bare", "ScriptBootstrapAction": {"Path": f"s3://{bucket}/bootstrap/bare.sh"}}],
        Configurations=[
            {
                "Classification": "spark-env",
                "Configurations": [{"Classification": "export", "Properties": {"PYSPARK_PYTHON": node_python}}],
            }
        ],
    )

    (step,) = cluster.wait_for_steps(timeout=180)

    logs = f"logs/{cluster.id}/steps/{step['Id']}"
    stdout = gzip.decompress(s3.get_object(Bucket=bucket, Key=f"{logs}/stdout.gz")["Body"].read()).decode()
    stderr = gzip.decompress(s3.get_object(Bucket=bucket, Key=f"{logs}/stderr.gz")["Body"].read()).decode()
    assert step["Status"]["State"] == "FAILED"
    assert "/node/mnt/fruits-pipeline/bare/bin/python" in stdout
    assert "ModuleNotFoundError: No module named 'numpy'" in stderr
