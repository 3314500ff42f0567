"""The DAG's steps and the jobs agree: each step's arguments parse, with the job's own parser, into the
run's paths and choices. A drift (a renamed flag, a new required one) fails here, not on a cluster."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from fruits_airflow.artifacts import ENTRY_SCRIPTS, StagedArtifacts
from fruits_airflow.paths import RunPaths
from fruits_airflow.steps import spark_steps
from fruits_airflow.upload import skip_reason
from fruits_contract import EXTRACT_FEATURES_JOB, PCA_JOB, is_hidden_name, is_image_name
from fruits_spark import extract_features, pca
from fruits_spark.errors import JobInputError
from fruits_spark.images import reject_reason_from_listing

PREFIX = "s3://fruits-contract/artifacts/0123456789ab/"
ARTIFACTS = StagedArtifacts(
    version="0123456789ab",
    prefix_uri=PREFIX,
    py_files_uri=f"{PREFIX}fruits_spark.zip",
    scripts={name: f"{PREFIX}{name}" for name in ENTRY_SCRIPTS},
    bootstrap_script_uri=f"{PREFIX}bootstrap/install_python_deps.sh",
    bootstrap_requirements_uri=f"{PREFIX}bootstrap/requirements.txt",
    bootstrap_primary_requirements_uri=f"{PREFIX}bootstrap/requirements-primary.txt",
    bootstrap_installer_requirements_uri=f"{PREFIX}bootstrap/requirements-installer.txt",
    wheelhouse_uris={"x86_64": "s3://fruits-contract/artifacts/wheelhouse/0123456789abcdef/"},
)


def job_arguments(paths: RunPaths, **choices) -> dict[str, list[str]]:
    """Each step's job name and the arguments its entry script receives."""
    arguments = {}
    for step in spark_steps(paths, ARTIFACTS, **choices):
        args = step["HadoopJarStep"]["Args"]
        script = next(arg for arg in args if arg in ARTIFACTS.scripts.values())
        assert step["Name"] == script.removeprefix(PREFIX).removesuffix(".py")
        arguments[step["Name"]] = args[args.index(script) + 1 :]
    return arguments


@pytest.mark.parametrize("weights", ["imagenet", "none", "s3://fruits-contract/weights/mobilenet_v2.h5"])
@pytest.mark.parametrize("reprocess_all", [False, True])
def test_extract_features_parses_the_steps_arguments_into_the_runs_paths(weights, reprocess_all):
    paths = RunPaths.for_run(
        "fruits-contract", "manual__2026-11-30T01:00:00+00:00", reprocess_all=reprocess_all, weights=weights
    )

    config = extract_features.parse_args(job_arguments(paths, variance=0.9, weights=weights)[EXTRACT_FEATURES_JOB])

    assert (config.images, config.weights) == (paths.images_uri, weights)
    assert config.features == paths.features_uri.rstrip("/")
    assert config.rejects == paths.rejects_uri.rstrip("/")
    assert config.manifest == paths.uri(paths.manifest_key)
    assert config.model_cache == paths.model_cache_uri == "s3://fruits-contract/artifacts/models/"


def test_extract_features_gets_the_bucket_s_imagenet_file_only_when_the_dag_passes_one():
    paths = RunPaths.for_run(
        "fruits-contract", "manual__2026-11-30T01:00:00+00:00", reprocess_all=False, weights="imagenet"
    )
    keras_file = (
        "s3://fruits-contract/artifacts/keras/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    )

    given = job_arguments(paths, variance=0.9, weights="imagenet", imagenet_weights=keras_file)
    absent = job_arguments(paths, variance=0.9, weights="imagenet")

    assert extract_features.parse_args(given[EXTRACT_FEATURES_JOB]).imagenet_weights == keras_file
    assert extract_features.parse_args(absent[EXTRACT_FEATURES_JOB]).imagenet_weights is None


@pytest.mark.parametrize("variance", [0.95, 0.5, 1.0, 0.123456789012345])
def test_pca_parses_the_steps_arguments_into_the_runs_paths_and_every_digit_of_the_variance(variance):
    paths = RunPaths.for_run("fruits-contract", "scheduled__2026-11-30", reprocess_all=False, weights="imagenet")

    config = pca.parse_args(job_arguments(paths, variance=variance, weights="imagenet")[PCA_JOB])

    assert (config.variance, config.k) == (variance, None)
    assert config.features == paths.features_uri.rstrip("/")
    assert config.output == paths.pca_uri.rstrip("/")
    assert config.report == paths.report_uri.rstrip("/")
    assert (config.images, config.manifest) == (paths.images_uri, paths.uri(paths.manifest_key))


def test_a_variance_the_form_should_have_refused_is_refused_by_the_job_too():
    paths = RunPaths.for_run("fruits-contract", "manual__x", reprocess_all=False, weights="imagenet")

    with pytest.raises(JobInputError, match=r"--variance 1\.5 is out of range"):
        pca.parse_args(job_arguments(paths, variance=1.5, weights="imagenet")[PCA_JOB])


def test_the_steps_run_every_entry_script_once_in_order():
    paths = RunPaths.for_run("fruits-contract", "manual__x", reprocess_all=False, weights="imagenet")

    assert list(job_arguments(paths, variance=0.95, weights="imagenet")) == [EXTRACT_FEATURES_JOB, PCA_JOB]
    assert sorted(f"{name}.py" for name in (EXTRACT_FEATURES_JOB, PCA_JOB)) == sorted(ENTRY_SCRIPTS)


@pytest.mark.parametrize(
    ("name", "image", "hidden"),
    [
        ("apple.jpg", True, False),
        ("APPLE.JPEG", True, False),
        ("pear.Png", True, False),
        ("notes.txt", False, False),
        ("_apple.jpg", True, True),
        (".apple.jpg", True, True),
        ("apple.jpg.tmp", False, False),
    ],
)
def test_the_upload_and_the_job_see_the_same_images_and_hidden_names(name, image, hidden):
    uploaded = skip_reason(PurePosixPath("Apple", name)) is None
    job_reason = reject_reason_from_listing(f"s3://b/images/Apple/{name}", size=10)

    assert (is_image_name(name), is_hidden_name(name)) == (image, hidden)
    assert uploaded == (image and not hidden)
    assert (job_reason is not None) == hidden
