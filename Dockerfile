# The images of docker-compose.yaml, two stages of one file, each installing its own export of the project's
# lock (pyproject.toml's dependency groups; `make lock` writes the files):
#
#   airflow    the Airflow services (api-server, scheduler, dag-processor, triggerer, airflow-init): the
#              official Airflow image and the Airflow side only (requirements-airflow.txt: the Amazon
#              provider, pyarrow for check_output). No Spark, no TensorFlow: the DAG calls AWS, the
#              cluster runs the jobs.
#   local-aws  the embedded AWS endpoint and local-aws-init, which stand for AWS: the airflow stage plus
#              moto and pyspark (requirements-local-aws.txt), Java 17 and Hadoop's S3A connector, as the
#              endpoint runs each EMR step's spark-submit in its container. No job library either: the
#              steps run with the virtualenv that the cluster's bootstrap action builds on the emulated
#              node, in the endpoint's state volume, from the bucket's wheelhouse alone (no internet, as
#              on a private subnet), which local-aws-wheelhouse publishes; that needs the image's
#              python3.11 with ensurepip, which it has.
#
# The code is not in the images: docker-compose.yaml mounts dags/, plugins/, spark_jobs/, bootstrap/ and the
# local AWS tooling, so an edit shows up without a rebuild. Rebuild (`docker compose build`) after the lock
# changes. The tag must name the lock's apache-airflow and Python 3.11 (tests/compose checks both).
FROM apache/airflow:3.3.2-python3.11 AS airflow

# PYTHONPATH is the Makefile's, at the mount points: the DAG imports fruits_airflow from plugins/ and
# fruits_contract (what it shares with the jobs) from spark_jobs/; the compose services run
# `python -m local_aws` and `python -m tools.local_provision` from /opt/airflow.
ENV PYTHONPATH=/opt/airflow/spark_jobs:/opt/airflow/plugins:/opt/airflow

USER airflow
# Each requirements file is complete and pins apache-airflow at this image's version, so nothing is resolved
# here; install rather than sync, to keep the image's own packages (the Postgres driver among them).
COPY --chown=airflow:0 requirements-airflow.txt /tmp/fruits-pipeline/requirements-airflow.txt
RUN pip install --no-cache-dir --no-deps --requirement /tmp/fruits-pipeline/requirements-airflow.txt \
    && rm -rf /tmp/fruits-pipeline

FROM airflow AS local-aws

USER root
# pyspark 3.5 runs on Java 17, as EMR 7 does. Debian's slim images lack the man folder the JRE's postinst
# links into. /usr/lib/jvm/java-17 names the JRE whatever the architecture (amd64, arm64).
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17 \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /opt/airflow/local-aws-state /opt/airflow/wheelhouse \
    && chown airflow:0 /opt/airflow/local-aws-state /opt/airflow/wheelhouse \
    && chmod g+rwx /opt/airflow/local-aws-state /opt/airflow/wheelhouse

# The step runner uses the image's spark-submit (it looks for .venv/bin/spark-submit otherwise).
ENV JAVA_HOME=/usr/lib/jvm/java-17 \
    LOCAL_AWS_SPARK_SUBMIT=/home/airflow/.local/bin/spark-submit \
    TF_CPP_MIN_LOG_LEVEL=2

USER airflow
COPY --chown=airflow:0 requirements-local-aws.txt /tmp/fruits-pipeline/requirements-local-aws.txt
RUN pip install --no-cache-dir --no-deps --requirement /tmp/fruits-pipeline/requirements-local-aws.txt

# The venv's Spark settings and Hadoop's S3A connector, as `make install` puts them: logs are quiet, s3://
# goes through S3A to AWS_ENDPOINT_URL (this endpoint). The connector comes from Maven Central through the
# same script, with Maven taken from its official image (it runs on the image's Java 17); its download cache
# is removed.
COPY --from=maven:3.9-eclipse-temurin-17 /usr/share/maven /opt/maven
COPY --chown=airflow:0 conf/spark/ /tmp/fruits-pipeline/spark-conf/
RUN spark_home="$(python -c 'import pathlib, pyspark; print(pathlib.Path(pyspark.__file__).parent)')" \
    && mkdir -p "${spark_home}/conf" \
    && cp /tmp/fruits-pipeline/spark-conf/spark-env.sh /tmp/fruits-pipeline/spark-conf/spark-defaults.conf \
        /tmp/fruits-pipeline/spark-conf/log4j2.properties "${spark_home}/conf/" \
    && PATH="/opt/maven/bin:${PATH}" /tmp/fruits-pipeline/spark-conf/install-s3a-jars.sh "${spark_home}/jars" \
    && rm -rf /tmp/fruits-pipeline "${HOME}/.m2" \
    && test -x "${LOCAL_AWS_SPARK_SUBMIT}" \
    && java -version
