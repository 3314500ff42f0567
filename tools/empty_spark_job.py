"""`make bench`'s yardstick for the fixed cost: a Spark job that does nothing but start and stop.

    spark-submit tools/empty_spark_job.py [--summary-json F]

A session configured as the jobs configure theirs (fruits_spark.session), one Python task, stop.
What a run of extract_features costs beyond its images is compared with this, measured in the same
``make bench`` run: seconds alone swing with the machine's load and the cores' speed of the day.
"""

from __future__ import annotations

import argparse
import time

from fruits_spark.session import spark_session
from fruits_spark.summary import write_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary-json", help="local file to write the phases' seconds to, as JSON")
    args = parser.parse_args()
    started = time.monotonic()
    with spark_session("empty_spark_job") as spark:
        session_started = time.monotonic()
        # One Python task: a job's fixed cost includes starting a Python worker, so the yardstick does too.
        spark.sparkContext.parallelize([0], 1).map(lambda value: value + 1).collect()
        stopping = time.monotonic()
    seconds = {
        "session_start": round(session_started - started, 3),
        "python_task": round(stopping - session_started, 3),
        "session_stop": round(time.monotonic() - stopping, 3),
    }
    if args.summary_json:
        write_summary(args.summary_json, {"job": "empty_spark_job", "seconds": seconds})


if __name__ == "__main__":
    main()
