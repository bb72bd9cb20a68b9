"""The Prefect server as a researcher uses it: a real ``prefect server start`` on 127.0.0.1 and the
real ``flows/deploy.py`` serving the loop.

- The served deployment's cron makes the server's scheduler create runs (it did not with
  SQLAlchemy 2.1: "Can't evaluate bulk DML statement"; pyproject pins 2.0).
- A run triggered through the API with overrides completes, leaves params.yaml as written, records
  its overrides in the run overlay, and shows its settings and plan in the flow run's logs and
  artifacts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.server]

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait(what: str, check, timeout: float, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: a process ended early:\n{Path(p.args[-1]).name}")
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``prefect server start`` on a free port of 127.0.0.1 with its state in a temporary folder."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_MEMO_STORE_PATH": str(home / "memo_store.toml"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait("prefect server health", lambda: httpx.get(f"{api}/health", timeout=5).status_code == 200, 120)
        yield {"api": api, "env": env, "home": home, "log": home / "server.log"}
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project (params.yaml, the seed bank, git + DVC) the served deployment runs in."""
    root = tmp_path_factory.mktemp("served-project")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    bank = yaml.safe_load((REPO / "params.yaml").read_text())["skills"]["seed_bank"]
    (root / bank).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / bank, root / bank)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def served(server, project):
    """``python flows/deploy.py`` serving the loop (its default nightly cron) for ``project``."""
    out = (server["home"] / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "flows/deploy.py", "--name", "nightly", "--params", str(project / "params.yaml")],
        cwd=REPO,
        env=server["env"],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = server["api"]

    def deployment():
        r = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": ["nightly"]}}})
        return (r.json() or [None])[0]

    try:
        dep = _wait("deployment registered", deployment, 120, [proc])
        yield {"deployment": dep, "proc": proc, "log": server["home"] / "serve.log"}
    finally:
        _stop(proc)
        out.close()


def _runs(api: str, deployment_id: str, state: str) -> list[dict]:
    body = {
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": [state]}}},
    }
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def test_the_served_cron_creates_scheduled_runs(server, served):
    dep = served["deployment"]
    assert dep["schedules"] and dep["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    runs = _wait(
        "scheduled runs",
        lambda: _runs(server["api"], dep["id"], "SCHEDULED"),
        90,
        [served["proc"]],
    )
    assert all(r["expected_start_time"] > r["created"] for r in runs)
    assert "bulk DML" not in server["log"].read_text()


def test_a_run_triggered_with_overrides_completes_without_rewriting_params(server, served, project):
    api, dep = server["api"], served["deployment"]
    params_before = (project / "params.yaml").read_text()
    run = httpx.post(
        f"{api}/deployments/{dep['id']}/create_flow_run",
        json={"parameters": {"overrides": ["eval.limit=2", "loop.iterations=1"], "plan_only": True}},
        timeout=10,
    ).json()

    def finished():
        state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()["state"]["type"]
        return state if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    assert _wait("triggered run", finished, 180, [served["proc"]]) == "COMPLETED", served["log"].read_text()
    # the overrides went to the run overlay, not into params.yaml
    assert (project / "params.yaml").read_text() == params_before
    overlay = yaml.safe_load((project / "overrides.yaml").read_text())
    assert overlay == {"eval": {"limit": 2}, "loop": {"iterations": 1}}
    assert "eval.limit" in (project / "dvc.yaml").read_text().split("overrides.yaml")[1]

    # the flow run's own logs and artifacts show them
    # (logs reach the server in batches, possibly after the run's final state: wait for them)
    def run_logs():
        logs = httpx.post(
            f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}, timeout=10
        ).json()
        messages = "\n".join(entry["message"] for entry in logs)
        return messages if "report" in messages and "overrides:" in messages else None

    messages = _wait("the run's logs", run_logs, 60)
    assert "overrides: eval.limit=2, loop.iterations=1" in messages
    assert "plan:" in messages and "report" in messages
    artifacts = httpx.post(
        f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}, timeout=10
    ).json()
    settings = next(a for a in artifacts if a["key"] == "settings")
    assert "limit: 2" in settings["data"] and "`eval.limit=2`" in settings["data"]
    # the deployment's parameters are described (the Run form shows these descriptions)
    schema = httpx.get(f"{api}/deployments/{dep['id']}", timeout=10).json()["parameter_openapi_schema"]
    assert "run overlay" in schema["properties"]["overrides"]["description"]
    assert not (Path(os.environ["HOME"]) / ".prefect").exists()
