"""`make airflow` end to end: the stack starts, a run triggered through the REST API with a conf (as the
UI's trigger form does) succeeds, the DAG's page in a real browser shows it, and Ctrl-C stops everything.

The browser is Debian's chromium driven by its chromedriver (`make test` installs both); nothing here
downloads a browser. The screenshot is kept in ``test-artifacts/`` (or ``$FRUITS_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from fruits_airflow.paths import RunPaths
from local_aws.iam_enforcement import ADMIN
from tests.suite import REPO_ROOT
from tools.local_airflow import BUCKET, DAG_ID, REGION
from tools.process_tree import alive, descendants
from tools.sample_images import generate

N_IMAGES = 8
VARIANCE = 0.9
STARTUP_TIMEOUT_S = 300
# One run takes 3 to 15 minutes here, depending on what else the machine's 2 cores run.
RUN_TIMEOUT_S = 1200
ARTIFACTS = Path(os.environ.get("FRUITS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@dataclass(frozen=True)
class Stack:
    process: subprocess.Popen
    url: str
    password: str
    endpoint_url: str
    banner: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_banner(process: subprocess.Popen, stderr_file: Path) -> str:
    """Stdout up to the banner's last line; the stack's stderr tail when it dies or hangs first."""
    lines, deadline = [], time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(lines)
    process.kill()
    pytest.fail(f"the stack did not come up:\n{''.join(lines)}\n{stderr_file.read_text()[-5000:]}")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, project_env: dict[str, str], project_node_dir: Path
) -> Iterator[Stack]:
    images = tmp_path_factory.mktemp("landing") / "images"
    generate(images, N_IMAGES, n_labels=2)
    state_dir = tmp_path_factory.mktemp("stack-state")
    # The session's node, shared with the demos, as `make airflow` and `make demo` share .local-aws's.
    (state_dir / "aws").mkdir()
    (state_dir / "aws" / "node").symlink_to(project_node_dir)
    stderr_file = state_dir / "stack.stderr"
    # Airflow as users run it: the suite's unit-test mode would create the DAG unpaused, so that its
    # scheduled run started before the triggered one.
    stack_env = {name: value for name, value in project_env.items() if name != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    command = [sys.executable, "-m", "tools.airflow_stack", "--images", str(images), "--port", str(free_port())]
    with stderr_file.open("w") as stderr:
        # A session of its own, like a terminal's foreground job: the SIGINT below is a Ctrl-C.
        process = subprocess.Popen(
            [*command, "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
            cwd=REPO_ROOT,
            env=stack_env,
        )
    banner = read_banner(process, stderr_file)
    url = re.search(r"Airflow is up: (\S+)", banner)[1]
    password = re.search(r"log in as admin / (\S+)", banner)[1]
    endpoint_url = re.search(r"AWS endpoint:\s+(\S+)", banner)[1]
    yield Stack(process, url, password, endpoint_url, banner)
    if process.poll() is None:
        # Left running by a failed test: stop it as Ctrl-C does, so that its services go too.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    """A REST client logged in as the UI's user: a JWT from /auth/token, as the UI gets one."""
    token = httpx.post(f"{stack.url}/auth/token", json={"username": "admin", "password": stack.password})
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    with httpx.Client(base_url=f"{stack.url}/api/v2", headers=headers, timeout=30) as client:
        yield client


def wait_for_run(api: httpx.Client, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").raise_for_status().json()
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(5)
    pytest.fail(f"run {run_id} did not finish in {RUN_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def triggered_run(api: httpx.Client) -> dict:
    """Trigger the DAG with a conf, as the trigger form posts it, then unpause it so that it runs.

    Unpausing also queues the latest scheduled run, behind this one (one active run at a time); it is
    still running when the Ctrl-C test stops the stack.
    """
    conf = {"weights": "none", "variance": VARIANCE, "reprocess_all": False}
    # Queued runs start in run_after order: due at the DAG's start date, this one goes before the scheduled run.
    body = {"logical_date": None, "run_after": "2025-01-01T00:00:00+00:00", "conf": conf}
    created = api.post(f"/dags/{DAG_ID}/dagRuns", json=body).raise_for_status()
    api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    return wait_for_run(api, created.json()["dag_run_id"])


def test_the_banner_says_where_to_go_and_how_to_log_in(stack: Stack) -> None:
    assert re.search(r"Airflow is up: http://127\.0\.0\.1:\d+\n", stack.banner)
    assert httpx.post(f"{stack.url}/auth/token", json={"username": "admin", "password": "wrong"}).status_code == 401


def test_a_run_triggered_with_a_conf_succeeds_and_uses_it(stack: Stack, triggered_run: dict) -> None:
    assert triggered_run["state"] == "success"
    assert triggered_run["conf"]["variance"] == VARIANCE

    paths = RunPaths.for_run(BUCKET, triggered_run["dag_run_id"], reprocess_all=False, weights="none")
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.endpoint_url,
        region_name=REGION,
        **ADMIN.keys,
    )
    report_key = f"{paths.report_prefix}explained_variance.json"
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert report["n_images"] == N_IMAGES
    assert report["threshold"] == VARIANCE
    s3.head_object(Bucket=BUCKET, Key=paths.pca_success_key)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert program.exists(), f"{program} is missing: make test installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        # No network here: without these, chromium keeps trying to reach Google's services.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    # Selenium Manager must not look for a driver online: the system's chromedriver is the one.
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def test_the_dag_page_shows_the_successful_run(stack: Stack, triggered_run: dict, browser: webdriver.Chrome) -> None:
    run_id = triggered_run["dag_run_id"]
    browser.get(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}")
    wait = WebDriverWait(browser, 60)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[name=username]")))
    browser.find_element(By.CSS_SELECTOR, "input[name=username]").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(stack.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # The run's header: its id, then its state badge.
    header = wait.until(
        expected_conditions.visibility_of_element_located(
            (By.XPATH, f"//*[normalize-space(text())='{run_id}']/following-sibling::*[normalize-space()='Success']")
        )
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "airflow-ui-successful-run.png"
    browser.save_screenshot(str(screenshot))

    assert header.is_displayed()
    assert f"/dags/{DAG_ID}/runs/" in browser.current_url
    assert screenshot.stat().st_size > 10_000


def test_the_run_s_asset_events_carry_its_summary(api: httpx.Client, triggered_run: dict) -> None:
    events = api.get(
        "/assets/events", params={"source_dag_id": DAG_ID, "source_run_id": triggered_run["dag_run_id"]}
    ).raise_for_status()
    by_uri = {event["uri"]: event["extra"] for event in events.json()["asset_events"]}
    paths = RunPaths.for_run(BUCKET, triggered_run["dag_run_id"], reprocess_all=False, weights="none")

    assert set(by_uri) == {paths.features_uri.rstrip("/"), paths.pca_uri.rstrip("/")}
    for extra in by_uri.values():
        assert extra["featurized"] == N_IMAGES
        assert extra["threshold"] == VARIANCE
        assert extra["run_id"] == triggered_run["dag_run_id"]


def test_the_run_s_report_tab_shows_its_figures_and_plots(
    stack: Stack, triggered_run: dict, browser: webdriver.Chrome
) -> None:
    # Logged in by the test above; the tab is the plugin's external view, in an iframe.
    browser.get(f"{stack.url}/dags/{DAG_ID}/runs/{triggered_run['dag_run_id']}")
    wait = WebDriverWait(browser, 60)
    tab = wait.until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "a[href$='/plugin/fruits_run_report']"))
    )
    tab.click()
    frame = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "iframe[title=Report]")))
    browser.switch_to.frame(frame)
    heading = wait.until(expected_conditions.visibility_of_element_located((By.XPATH, "//h2[text()='Images']")))
    displayed = heading.is_displayed()
    plots = browser.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")
    featurized = browser.find_element(By.XPATH, "//tr[td[1]='featurized by this run']/td[2]").text
    page = browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "airflow-ui-run-report.png"
    browser.save_screenshot(str(screenshot))

    assert displayed
    assert len(plots) == 2
    assert featurized == str(N_IMAGES)
    assert "Separability" in page
    assert screenshot.stat().st_size > 10_000


def test_ctrl_c_stops_every_process_it_started(stack: Stack, triggered_run: dict) -> None:
    started = descendants(stack.process.pid) - {stack.process.pid}
    assert len(started) >= 4, "the four Airflow services run under the stack"

    os.killpg(stack.process.pid, signal.SIGINT)
    returncode = stack.process.wait(timeout=90)

    assert returncode == 0, stack.process.stdout.read()
    assert not alive(started), "processes outlived the stack"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(stack.url.rsplit(":", 1)[1]))) != 0, "the api-server still listens"
