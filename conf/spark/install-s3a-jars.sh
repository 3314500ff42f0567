#!/usr/bin/env bash
# Puts Hadoop's S3A connector into a Spark's jars/ folder: hadoop-aws of the Hadoop version that Spark
# bundles, and the AWS SDK bundle hadoop-aws declares, from Maven Central through Maven, with the
# published checksums enforced (--strict-checksums). Does nothing when both are already there.
#
#   conf/spark/install-s3a-jars.sh SPARK_JARS_DIR
#
# EMR needs none of this: there EMRFS serves s3://. See conf/spark/spark-defaults.conf.
set -euo pipefail

jars_dir="${1:?usage: install-s3a-jars.sh SPARK_JARS_DIR}"
pom="$(cd "$(dirname "$0")" && pwd)/s3a/pom.xml"

shopt -s nullglob
hadoop_jars=("${jars_dir}"/hadoop-client-api-*.jar)
if [ "${#hadoop_jars[@]}" -ne 1 ]; then
    echo "install-s3a-jars: expected one hadoop-client-api jar in ${jars_dir}, found ${#hadoop_jars[@]}" >&2
    exit 1
fi
hadoop_version="${hadoop_jars[0]##*/hadoop-client-api-}"
hadoop_version="${hadoop_version%.jar}"

connector=("${jars_dir}/hadoop-aws-${hadoop_version}.jar" "${jars_dir}"/aws-java-sdk-bundle-*.jar)
if [ "${#connector[@]}" -eq 2 ] && [ -f "${connector[0]}" ]; then
    exit 0
fi
if ! command -v mvn >/dev/null; then
    echo "install-s3a-jars: Maven (mvn) is needed to fetch hadoop-aws ${hadoop_version}; install it (Debian: apt-get install maven)" >&2
    exit 1
fi
echo "fetching hadoop-aws ${hadoop_version} and its AWS SDK bundle into ${jars_dir}"
maven_log="$(mktemp)"
trap 'rm -f "${maven_log}"' EXIT
if ! mvn --batch-mode --strict-checksums --file "${pom}" \
    dependency:copy-dependencies \
    -Dhadoop.version="${hadoop_version}" \
    -DincludeScope=runtime \
    -DincludeArtifactIds=hadoop-aws,aws-java-sdk-bundle \
    -DoutputDirectory="${jars_dir}" >"${maven_log}" 2>&1; then
    grep -E '^\[(ERROR|WARNING)\]' "${maven_log}" >&2 || cat "${maven_log}" >&2
    echo "install-s3a-jars: Maven could not fetch hadoop-aws ${hadoop_version}; see above" >&2
    exit 1
fi
