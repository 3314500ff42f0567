"""One real spark-submit step: the script, its --py-files and its input come from S3, its parquet goes back."""

from __future__ import annotations

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
