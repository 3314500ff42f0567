"""The run's EMR steps: ``extract_features`` then ``pca``, each a spark-submit through command-runner.jar.

The steps run the staged version of the jobs (``--py-files`` zip and entry scripts under
``s3://BUCKET/artifacts/<version>/``). When a step fails, EMR cancels the following ones and keeps the
cluster waiting (``CANCEL_AND_WAIT``), so its logs reach the LogUri and ``terminate_cluster`` still
ends it; ``CONTINUE`` would run the PCA on a stale features dataset.
"""

from __future__ import annotations

from typing import Any

from fruits_airflow.artifacts import StagedArtifacts
from fruits_airflow.paths import RunPaths
from fruits_contract import EXTRACT_FEATURES_JOB, PCA_JOB, extract_features_argv, pca_argv

ACTION_ON_FAILURE = "CANCEL_AND_WAIT"


def _spark_step(name: str, artifacts: StagedArtifacts, arguments: list[str]) -> dict[str, Any]:
    return {
        "Name": name,
        "ActionOnFailure": ACTION_ON_FAILURE,
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            # Client mode keeps the driver on the primary node, so the step's stderr holds the
            # job's own error message and traceback.
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "client",
                "--py-files",
                artifacts.py_files_uri,
                artifacts.scripts[f"{name}.py"],
                *arguments,
            ],
        },
    }


def spark_steps(paths: RunPaths, artifacts: StagedArtifacts, *, variance: float, weights: str) -> list[dict[str, Any]]:
    """The steps of a run, in order, as ``EmrAddStepsOperator`` sends them.

    :param paths: where the run reads and writes.
    :param artifacts: the staged version of the jobs.
    :param variance: the share of variance the PCA keeps, in (0, 1].
    :param weights: ``imagenet``, ``none`` or a weights URI, passed to ``extract_features``.
    """
    return [
        _spark_step(
            EXTRACT_FEATURES_JOB,
            artifacts,
            extract_features_argv(
                images=paths.images_uri,
                features=paths.features_uri,
                rejects=paths.rejects_uri,
                weights=weights,
                model_cache=paths.model_cache_uri,
                manifest=paths.uri(paths.manifest_key),
                failure=paths.uri(paths.job_failure_key(EXTRACT_FEATURES_JOB)),
            ),
        ),
        _spark_step(
            PCA_JOB,
            artifacts,
            pca_argv(
                features=paths.features_uri,
                output=paths.pca_uri,
                variance=variance,
                report=paths.report_uri,
                images=paths.images_uri,
                manifest=paths.uri(paths.manifest_key),
                failure=paths.uri(paths.job_failure_key(PCA_JOB)),
            ),
        ),
    ]
