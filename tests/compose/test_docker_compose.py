"""docker-compose.yaml, checked without Docker (there is no engine here): the Compose spec, the paths it
mounts, the Airflow 3 commands it runs, and the configuration the DAG needs, each read by the code that
reads it at run time (Airflow's CLI, the Amazon provider, the pipeline's config, the endpoint's CLI).
Where it is not obvious that a check can fail, a test feeds it a broken input."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose

from tests.suite import REPO_ROOT

PROVISION_SERVICE = "local-aws-init"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
)
# The LocalExecutor runs the tasks in the scheduler's container: it needs the project and the landing folder.
TASK_SERVICE = "airflow-scheduler"
ENDPOINT_SERVICE = "local-aws"
DUMMY_KEY = "local-endpoint"
AIRFLOW_PACKAGE = Path(importlib.util.find_spec("airflow").origin).parent


def option_value(args: list[str], option: str) -> str:
    """The value after ``option`` in an argv."""
    assert option in args, f"{option} missing from {args}"
    return args[args.index(option) + 1]


def aws_connection(compose):
    """The aws_default connection as the Amazon provider reads it."""
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    value = compose.environment(TASK_SERVICE)["AIRFLOW_CONN_AWS_DEFAULT"]
    return AwsConnectionWrapper(Connection.from_json(value, conn_id="aws_default"))


def endpoint_args(compose):
    """The embedded endpoint's command, parsed by its own CLI."""
    from local_aws.__main__ import _parse_args

    command = compose.command(ENDPOINT_SERVICE)
    assert command[:3] == ["python", "-m", "local_aws"]
    return _parse_args(command[3:])


def test_compose_file_is_valid_against_the_compose_spec(compose):
    PyCompose.from_json(compose.to_json()).validate()


def test_a_file_breaking_the_compose_spec_is_refused(compose):
    broken = copy.deepcopy(compose.data)
    broken["services"]["airflow-scheduler"]["depends_on"]["postgres"]["condition"] = "service_ready"
    with pytest.raises(ValueError, match="service_ready"):
        PyCompose.from_json(json.dumps(broken))


def test_a_named_volume_that_is_not_declared_is_refused(compose):
    broken = copy.deepcopy(compose.data)
    del broken["volumes"]["airflow-logs"]
    with pytest.raises(ValueError, match="airflow-logs"):
        PyCompose.from_json(json.dumps(broken)).validate()


def test_every_dependency_is_a_service_of_the_file(compose):
    """The spec parser does not check this; Compose refuses to start."""
    services = compose.services
    undefined = {(name, dependency) for name in services for dependency in services[name].get("depends_on", {})}
    assert {pair for pair in undefined if pair[1] not in services} == set()


def test_the_only_variable_a_developer_must_set_is_the_jwt_secret(compose, read_compose):
    with pytest.raises(ValueError, match="AIRFLOW_JWT_SECRET is not set"):
        read_compose(compose.path, {})


def test_the_jwt_secret_is_not_written_in_the_file(compose):
    raw = yaml.safe_load(compose.path.read_text())["x-airflow-common"]["environment"]
    assert re.fullmatch(r"\$\{AIRFLOW_JWT_SECRET:\?[^}]+\}", raw["AIRFLOW__API_AUTH__JWT_SECRET"])


def test_every_bind_mount_source_exists_in_the_repository(compose):
    sources = {source for name in compose.services for source in compose.bind_mounts(name).values()}
    missing = sorted(source for source in sources if not (REPO_ROOT / source).exists())
    assert len(sources) >= 7, sources
    assert missing == []


def test_every_build_has_its_context_and_dockerfile(compose):
    builds = [service["build"] for service in compose.services.values() if "build" in service]
    assert builds
    for build in builds:
        context = REPO_ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context / dockerfile).is_file()


def test_airflow_runs_the_airflow_stage_and_the_endpoint_its_own(compose):
    built = {name: service for name, service in compose.services.items() if "build" in service}
    images = {name: (service["image"], service["build"]["target"]) for name, service in built.items()}

    assert images == {
        **{name: ("fruits-pipeline-airflow:local", "airflow") for name in compose.airflow_services()},
        "local-aws": ("fruits-pipeline-local-aws:local", "local-aws"),
        "local-aws-init": ("fruits-pipeline-local-aws:local", "local-aws"),
        "local-aws-wheelhouse": ("fruits-pipeline-local-aws:local", "local-aws"),
    }


def test_every_build_target_is_a_stage_of_the_dockerfile(compose):
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stage_names = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE))
    targets = {service["build"]["target"] for service in compose.services.values() if "build" in service}

    assert targets == stage_names


def test_the_airflow_services_are_the_expected_ones(compose):
    assert sorted(compose.airflow_services()) == sorted(AIRFLOW_SERVICES)


def test_the_four_airflow_3_components_run(compose):
    commands = {compose.command(name)[0] for name in AIRFLOW_SERVICES}
    assert commands >= {"api-server", "scheduler", "dag-processor", "triggerer"}


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_service_command_is_an_airflow_3_command(compose, airflow_cli, service):
    args = compose.command(service)
    args = args[1:] if args[0] == "airflow" else args
    assert airflow_cli(*args, "--help") == 0, args


@pytest.mark.parametrize("service", ["airflow-dag-processor", "airflow-triggerer"])
def test_airflow_healthcheck_is_an_airflow_3_command(compose, airflow_cli, service):
    program, *args = compose.healthcheck(service)
    assert program == "airflow"
    assert airflow_cli(*args, "--help") == 0, args


def test_airflow_2_webserver_is_refused_by_the_command_check(airflow_cli):
    assert airflow_cli("webserver", "--help") != 0


def test_api_server_publishes_port_8080_on_the_host(compose):
    ports = compose.services["airflow-apiserver"]["ports"]
    assert [port.split(":")[-2:] for port in ports] == [["8080", "8080"]]


def test_api_server_healthcheck_polls_a_route_of_this_airflow(compose):
    url = compose.healthcheck("airflow-apiserver")[-1]
    spec = yaml.safe_load((AIRFLOW_PACKAGE / "api_fastapi/core_api/openapi/v2-rest-api-generated.yaml").read_text())
    assert urlsplit(url).port == 8080
    assert urlsplit(url).path in spec["paths"]


def test_scheduler_serves_the_health_check_its_healthcheck_polls(compose):
    config = yaml.safe_load((AIRFLOW_PACKAGE / "config_templates/config.yml").read_text())
    default_port = int(config["scheduler"]["options"]["scheduler_health_check_server_port"]["default"])
    url = compose.healthcheck(TASK_SERVICE)[-1]
    assert compose.environment(TASK_SERVICE)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert urlsplit(url).port == default_port


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_executor_is_local_and_examples_are_off(compose, service):
    environment = compose.environment(service)
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert environment["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"


def test_every_airflow_service_has_the_same_configuration(compose):
    """The JWT secret above all: a task token signed by the scheduler must check out at the api-server."""
    environments = [compose.environment(name) for name in AIRFLOW_SERVICES]
    assert all(environment == environments[0] for environment in environments)


def test_every_airflow_option_set_is_an_option_of_this_airflow(compose):
    config = yaml.safe_load((AIRFLOW_PACKAGE / "config_templates/config.yml").read_text())
    options = {(section, option) for section, body in config.items() for option in body["options"]}
    names = [name for name in compose.environment(TASK_SERVICE) if name.startswith("AIRFLOW__")]
    unknown = [name for name in names if tuple(name.lower().split("__")[1:]) not in options]
    assert len(names) >= 8
    assert unknown == []


def test_execution_api_is_the_api_servers(compose):
    url = urlsplit(compose.environment(TASK_SERVICE)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver"
    assert url.port == int(compose.services["airflow-apiserver"]["ports"][0].split(":")[-1])
    assert url.path == "/execution/"


# Airflow's auth manager module imports starlette's test client, which warns about its own httpx.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_login_is_an_admin_of_the_simple_auth_manager(compose, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager, SimpleAuthManagerRole

    environment = compose.environment("airflow-apiserver")
    monkeypatch.setenv(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    )
    users = SimpleAuthManager.get_users()
    assert environment["AIRFLOW__CORE__AUTH_MANAGER"] == f"{SimpleAuthManager.__module__}.{SimpleAuthManager.__name__}"
    assert [(user.username, SimpleAuthManagerRole[user.role.upper()]) for user in users] == [
        ("admin", SimpleAuthManagerRole.ADMIN)
    ]


def test_aws_connection_reaches_the_embedded_endpoint_service(compose, local_variable):
    connection, endpoint = aws_connection(compose), endpoint_args(compose)
    url = urlsplit(connection.endpoint_url)
    assert connection.conn_type == "aws"
    assert (url.hostname, url.port) == (ENDPOINT_SERVICE, endpoint.port)
    assert connection.region_name == endpoint.region == local_variable["region"]


def test_aws_connection_assumes_the_provisioned_airflow_role_through_the_endpoints_sts(compose):
    from tools.local_provision import AIRFLOW_ROLE_ARN

    connection = aws_connection(compose)

    assert connection.role_arn == AIRFLOW_ROLE_ARN
    assert connection.get_service_endpoint_url("sts", sts_connection_assume=True) == connection.endpoint_url


def test_embedded_endpoint_listens_to_other_containers(compose):
    assert endpoint_args(compose).host == "0.0.0.0"


def test_embedded_endpoint_keeps_its_state_in_a_named_volume(compose):
    state_dir = str(endpoint_args(compose).state_dir)
    assert compose.mounts(ENDPOINT_SERVICE)[state_dir] in compose.data["volumes"]


def test_embedded_endpoint_healthcheck_polls_its_port(compose):
    url = urlsplit(compose.healthcheck(ENDPOINT_SERVICE)[-1])
    assert url.port == endpoint_args(compose).port


def test_variable_passes_the_pipelines_own_validation(compose, local_variable):
    from fruits_airflow.config import parse_config

    settings = parse_config(local_variable)
    assert (settings.bucket, settings.region) == ("fruits-demo", "eu-west-1")


def test_variable_images_dir_is_the_landing_folder_mounted_where_tasks_run(compose, local_variable):
    from fruits_airflow.config import parse_config

    images_dir = parse_config(local_variable).images_dir
    source = compose.bind_mounts(TASK_SERVICE)[images_dir]
    assert (REPO_ROOT / source).is_dir()


def test_artifacts_are_found_where_the_repository_layout_puts_them(compose):
    """stage_artifacts finds spark_jobs/ and bootstrap/ next to plugins/: the mounts keep that layout."""
    from fruits_airflow import artifacts

    mounts = compose.bind_mounts(TASK_SERVICE)
    plugins_target = next(target for target, source in mounts.items() if source == "./plugins")
    container_root = PurePosixPath(plugins_target).parent
    for folder in (artifacts.SPARK_JOBS_DIR, artifacts.BOOTSTRAP_DIR):
        relative = folder.relative_to(artifacts.REPO_ROOT).as_posix()
        assert mounts.get(str(container_root / relative)) == f"./{relative}"


def test_provisioning_creates_the_variables_bucket_in_the_endpoint(
    compose, local_variable, provision_script, endpoint_network
):
    command, connection = provision_script(compose)[0], aws_connection(compose)
    assert command[:3] == ["python", "-m", "tools.local_provision"]
    assert option_value(command, "--endpoint-url") == connection.endpoint_url
    assert (local_variable["bucket"], local_variable["region"]) == ("fruits-demo", "eu-west-1")
    assert local_variable["subnet_id"] == endpoint_network["subnet_id"]


def test_the_provisioned_variable_is_set_in_airflows_database(compose, airflow_cli, provision_script):
    from fruits_airflow.config import VARIABLE_KEY

    setting = provision_script(compose)[1]
    assert setting[:4] == ["airflow", "variables", "set", VARIABLE_KEY]
    assert airflow_cli(*setting[1:3], "--help") == 0
    assert "AIRFLOW_VAR_FRUITS_PIPELINE" not in compose.environment(TASK_SERVICE)
    assert compose.services[PROVISION_SERVICE]["depends_on"]["airflow-init"]["condition"] == (
        "service_completed_successfully"
    )
    assert (
        compose.environment(PROVISION_SERVICE)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == (compose.environment(TASK_SERVICE)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    )


def test_provisioning_sees_the_stacks_template_where_it_looks_for_it(compose):
    from tools import stack_template

    mounts = compose.bind_mounts(PROVISION_SERVICE)
    tools_target = next(target for target, source in mounts.items() if source == "./tools")
    relative = stack_template.TEMPLATE_PATH.relative_to(stack_template.REPO_ROOT)
    folder = relative.parts[0]
    assert mounts.get(str(PurePosixPath(tools_target).parent / folder)) == f"./{folder}"


@pytest.mark.parametrize("service", [TASK_SERVICE, "airflow-triggerer"])
def test_services_calling_aws_wait_for_the_provisioning(compose, service):
    assert compose.services[service]["depends_on"][PROVISION_SERVICE]["condition"] == "service_completed_successfully"
    assert compose.services[PROVISION_SERVICE]["depends_on"][ENDPOINT_SERVICE]["condition"] == "service_healthy"


def test_the_only_aws_keys_are_the_endpoints_dummy_ones(compose):
    """Airflow's are those of the endpoint's principal for Airflow's host; local-aws-wheelhouse publishes as the
    endpoint's administrator, as an operator does on AWS."""
    from local_aws.iam_enforcement import ADMIN, AIRFLOW_HOST

    connection = aws_connection(compose)
    airflow_keys = {connection.aws_access_key_id, connection.aws_secret_access_key}
    keys = set(airflow_keys)
    for name in compose.services:
        environment = compose.environment(name)
        keys |= {environment[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if key in environment}
    assert airflow_keys == {DUMMY_KEY} == {AIRFLOW_HOST.access_key_id, AIRFLOW_HOST.secret_access_key}
    assert keys == {DUMMY_KEY, ADMIN.access_key_id, ADMIN.secret_access_key}


def aws_keys_in(text: str) -> list[str]:
    """Strings shaped like an AWS access key id or secret access key."""
    access_key_ids = re.findall(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", text)
    secret_keys = re.findall(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", text)
    return access_key_ids + secret_keys


def test_the_key_check_finds_aws_documentation_example_keys():
    example = (
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    )
    assert aws_keys_in(example) == ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]


@pytest.mark.parametrize("name", ["docker-compose.yaml", "docker-compose.aws.yaml", "Dockerfile"])
def test_no_real_looking_aws_key_is_written_in_the_file(name):
    assert aws_keys_in((REPO_ROOT / name).read_text()) == []


def test_every_service_mounting_plugins_mounts_what_its_links_point_to(compose):
    """plugins/fruits_contract.py links to spark_jobs/: a service mounting plugins/ alone could not import it."""
    links = sorted(path for path in (REPO_ROOT / "plugins").rglob("*") if path.is_symlink())
    assert links
    unresolved = []
    for service in compose.services:
        mounts = compose.bind_mounts(service)
        plugins_target = next((target for target, source in mounts.items() if source == "./plugins"), None)
        if plugins_target is None:
            continue
        for link in links:
            folder = link.resolve().relative_to(REPO_ROOT).parts[0]
            if mounts.get(str(PurePosixPath(plugins_target).parent / folder)) != f"./{folder}":
                unresolved.append(f"{service}: {link.relative_to(REPO_ROOT)} needs ./{folder}")
    assert unresolved == []
