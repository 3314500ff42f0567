# Installed into the venv's pyspark by `make install`: the venv's spark-submit runs the jobs with the
# venv's Python (which has numpy, PIL, LiteRT...), not whatever `python3` is first on PATH.
# SPARK_HOME is .venv/lib/python3.X/site-packages/pyspark, so the venv is four levels up.
venv_python="$(cd "${SPARK_HOME}/../../../.." && pwd)/bin/python"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-${venv_python}}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-${PYSPARK_PYTHON}}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Local runs only: bind to loopback rather than warn that the hostname resolves to it.
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
