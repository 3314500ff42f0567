# Installed into the venv's pyspark by `make install`: the venv's spark-submit runs the jobs with the
# venv's Python (which has numpy, PIL, LiteRT...), not whatever `python3` is first on PATH.
# SPARK_HOME is .venv/lib/python3.X/site-packages/pyspark, so the venv is four levels up.
venv_python="$(cd "${SPARK_HOME}/../../../.." && pwd)/bin/python"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-${venv_python}}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-${PYSPARK_PYTHON}}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Local runs only: bind to loopback rather than warn that the hostname resolves to it.
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"

# s3:// goes through Hadoop's S3A connector here (spark-defaults.conf). With the standard AWS_ENDPOINT_URL
# set (the embedded endpoint of local_aws, or any S3-compatible store), it goes there, path-style, signed
# for AWS_REGION; without it, to AWS itself. Spark reads spark.* system properties as its own settings.
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    s3a_options="-Dspark.hadoop.fs.s3a.endpoint=${AWS_ENDPOINT_URL} -Dspark.hadoop.fs.s3a.path.style.access=true"
    s3a_region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
    if [ -n "${s3a_region}" ]; then
        s3a_options="${s3a_options} -Dspark.hadoop.fs.s3a.endpoint.region=${s3a_region}"
    fi
    export SPARK_SUBMIT_OPTS="${SPARK_SUBMIT_OPTS:+${SPARK_SUBMIT_OPTS} }${s3a_options}"
fi
