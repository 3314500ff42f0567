"""The Dockerfile of docker-compose.yaml, checked without Docker: the base image is the lock's Airflow, each
stage installs its environment's export of the lock (the Airflow side alone: no Spark, no TensorFlow; the
endpoint's: moto, Spark and Java), the build context lets in what it copies, and the environment points at
the paths the compose file mounts."""

from __future__ import annotations

import re
import shlex
from fnmatch import fnmatch
from pathlib import PurePosixPath

import pytest

from local_aws.spark_submit import SPARK_SUBMIT_ENV
from tests.suite import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by its name (``FROM image AS name``), its ``FROM`` first."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            current = []
            found[arguments.split()[-1]] = current
        current.append((keyword, arguments))
    return found


def runs_of(stage: list[tuple[str, str]]) -> str:
    return " ".join(arguments for keyword, arguments in stage if keyword == "RUN")


def environment(text: str) -> dict[str, str]:
    """What the ``ENV key=value ...`` instructions set."""
    env = {}
    for keyword, arguments in instructions(text):
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def copied_sources(text: str) -> list[str]:
    """The build-context paths the ``COPY`` instructions take (not those from other stages or images)."""
    sources = []
    for keyword, arguments in instructions(text):
        args = shlex.split(arguments)
        if keyword == "COPY" and not any(arg.startswith("--from") for arg in args):
            sources.extend(arg for arg in args[:-1] if not arg.startswith("--"))
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` out of the context: the last matching pattern decides, and a
    pattern that matches a folder matches everything in it."""
    result = False
    candidates = [path, *(str(parent) for parent in PurePosixPath(path).parents if str(parent) != ".")]
    for pattern in patterns:
        exception = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if any(fnmatch(candidate, pattern) for candidate in candidates):
            result = not exception
    return result


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_base_image_is_the_official_airflow_of_the_lock_on_python_311(dockerfile):
    lock = (REPO_ROOT / "requirements-airflow.txt").read_text()
    locked_airflow = re.search(r"^apache-airflow==(\S+)", lock, re.MULTILINE)[1]
    assert [stage[0][1] for stage in stages(dockerfile).values()] == [
        f"apache/airflow:{locked_airflow}-python3.11 AS airflow",
        "airflow AS local-aws",
    ]


@pytest.mark.parametrize(
    ("stage", "requirements"),
    [("airflow", "requirements-airflow.txt"), ("local-aws", "requirements-local-aws.txt")],
)
def test_each_stage_installs_its_export_of_the_lock(dockerfile, stage, requirements):
    instructions_of_stage = stages(dockerfile)[stage]
    copied = [arguments for keyword, arguments in instructions_of_stage if keyword == "COPY"]

    assert any(shlex.split(arguments)[-2] == requirements for arguments in copied)
    assert re.search(
        rf"pip install .*--no-deps --requirement \S*/{re.escape(requirements)}", runs_of(instructions_of_stage)
    )


def test_the_airflow_stage_installs_neither_spark_nor_tensorflow_nor_java(dockerfile):
    airflow = stages(dockerfile)["airflow"]
    pins = (REPO_ROOT / "requirements-airflow.txt").read_text()

    assert not re.search(r"^(pyspark|tensorflow-cpu|keras|moto)==", pins, re.MULTILINE)
    assert "openjdk" not in runs_of(airflow)
    assert "JAVA_HOME" not in " ".join(arguments for keyword, arguments in airflow if keyword == "ENV")


def test_every_copied_source_exists(dockerfile):
    sources = copied_sources(dockerfile)
    assert sources
    assert [source for source in sources if not (REPO_ROOT / source).exists()] == []


def test_dockerignore_lets_in_every_copied_file(dockerfile, dockerignore):
    files = []
    for source in copied_sources(dockerfile):
        path = REPO_ROOT / source
        files += [path] if path.is_file() else [child for child in path.rglob("*") if child.is_file()]
    relative = [file.relative_to(REPO_ROOT).as_posix() for file in files]
    assert [file for file in relative if ignored(file, dockerignore)] == []


def test_dockerignore_keeps_the_venv_and_local_state_out(dockerignore):
    assert ignored(".venv/bin/python", dockerignore)
    assert ignored(".local-aws/s3/fruits-demo/images/a.jpg", dockerignore)


def test_java_17_is_installed_for_the_endpoint_and_java_home_names_it(dockerfile):
    runs = runs_of(stages(dockerfile)["local-aws"])
    java_home = environment(dockerfile)["JAVA_HOME"]
    assert "openjdk-17-jre-headless" in runs
    assert re.search(rf"ln -s .* {re.escape(java_home)}\b", runs)


def test_step_runner_is_told_where_the_images_spark_submit_is(dockerfile):
    assert environment(dockerfile)[SPARK_SUBMIT_ENV].endswith("/bin/spark-submit")


def test_pythonpath_holds_the_mounted_project_folders(dockerfile, compose):
    """The DAG imports fruits_airflow from plugins/; `python -m local_aws` and `tools.…` run from the root."""
    mounts = compose.bind_mounts("airflow-scheduler")
    entries = environment(dockerfile)["PYTHONPATH"].split(":")
    container_root = str(PurePosixPath(next(t for t, source in mounts.items() if source == "./plugins")).parent)
    folders = [entry for entry in entries if entry != container_root]
    assert container_root in entries
    assert {mounts.get(folder) for folder in folders} == {"./plugins", "./spark_jobs"}


def test_the_endpoint_s_image_gets_the_s3a_connector_through_make_install_s_script(dockerfile):
    runs = runs_of(stages(dockerfile)["local-aws"])

    assert "install-s3a-jars.sh" in runs
    assert "spark-defaults.conf" in runs
