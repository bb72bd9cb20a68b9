"""Look at the Prefect and MLflow UIs as a researcher would: `make ui-check`.

Starts a Prefect server and an MLflow server on 127.0.0.1 (state in a temporary folder), serves
the loop's deployment for a scratch project, triggers one tiny run through the API (its settings
as overrides: 1 task x 2 rollouts, 3 steps, 1 eval game), waits for it, then saves screenshots with
headless Chromium (Debian's `chromium`) into docs/screenshots/: the MLflow runs table with the
headline metric columns, the deployment with its upcoming scheduled runs, the flow run's logs and
a stage's metrics artifact. Needs `make install data` and models/base (`make run` prepares it, or
`skillmaster model prepare`). About 5 minutes on 2 cores. `--deployment-only` retakes just the
deployment's screenshot (no flow run, under a minute).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = REPO / "docs" / "screenshots"
TINY = [
    "rollout.num_tasks=1",
    "rollout.group_size=2",
    "rollout.max_new_tokens=24",
    "rollout.num_workers=1",
    "env.max_steps=3",
    "review.max_new_tokens=48",
    "counterfactual.probes_per_edit=1",
    "counterfactual.max_edits=1",
    "counterfactual.placebo_edits=0",
    "train.max_samples=2",
    "sft.enabled=false",
    "eval.limit=1",
    "loop.iterations=1",
    "tracking.experiment=ui-check",
]


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := check():
                return found
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise SystemExit(f"ui-check: {what} did not happen within {timeout:.0f} s")


def start(cmd: list[str], env: dict, log: Path, cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def browser():
    """Headless Chromium (Debian's package) driven by Playwright, which `make ui-check` installs."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("ui-check: headless Chromium is missing; install it with `apt-get install chromium`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit(
            "ui-check: Playwright is missing; `make ui-check` installs it (pip install playwright)"
        ) from None
    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])


def shoot(page, url: str, name: str, ready: str | None = None, settle_ms: int = 3000) -> Path:
    """Open ``url``, wait for the text ``ready`` (when given), then save docs/screenshots/<name>.png."""
    page.goto(url)
    if ready:
        page.get_by_text(ready).first.wait_for(timeout=60_000)
    page.wait_for_timeout(settle_ms)
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"  {path.relative_to(REPO)}  <- {url}")
    return path


def mlflow_runs_table(page, url: str, columns: list[str]) -> None:
    """The MLflow 3 runs table in its model-training view, with ``columns`` (metrics) ticked in
    the table's Columns menu."""
    page.goto(url)
    page.get_by_role("button", name="Columns").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    for name in columns:
        page.get_by_role("button", name="Columns").first.click()
        page.get_by_placeholder("Search columns").fill(name)
        page.wait_for_timeout(600)
        nodes = page.locator(".du-bois-light-tree-treenode")
        for i in range(nodes.count()):
            if nodes.nth(i).inner_text().strip() == name:
                nodes.nth(i).locator(".du-bois-light-tree-checkbox").click()
                break
        page.keyboard.press("Escape")
        page.wait_for_timeout(400)
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(OUT / "mlflow-runs.png"))
    print(f"  docs/screenshots/mlflow-runs.png  <- {url} (columns {', '.join(columns)})")


def scheduled_run(api: str, deployment_id: str):
    """The deployment's first upcoming scheduled run, once the scheduler has made it (else None)."""
    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={
            "flow_runs": {
                "deployment_id": {"any_": [deployment_id]},
                "state": {"type": {"any_": ["SCHEDULED"]}},
            },
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 1,
        },
    ).json()
    return runs[0] if runs else None


def shoot_deployment(page, prefect: str, api: str, dep: dict) -> None:
    """The deployment's Upcoming tab once its first scheduled run is listed (by name), not just
    counted."""
    upcoming = wait_for("a scheduled run", lambda: scheduled_run(api, dep["id"]), 180)
    shoot(
        page,
        f"{prefect}/deployments/deployment/{dep['id']}?tab=Upcoming",
        "prefect-deployment",
        upcoming["name"],
    )


def main() -> None:
    deployment_only = "--deployment-only" in sys.argv[1:]
    if not (REPO / "models" / "base").is_dir():
        raise SystemExit(
            "ui-check: models/base is missing; run `make run` or `skillmaster model prepare` first"
        )
    tmp = Path(tempfile.mkdtemp(prefix="skillmaster-ui-"))
    project = tmp / "project"
    project.mkdir()
    for name in ("params.yaml", ".gitignore"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "src" / "skillmaster" / "resources", project / "src" / "skillmaster" / "resources")
    (project / "models").mkdir()
    os.symlink(REPO / "models" / "base", project / "models" / "base")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=project, check=True)
    pport, mport = free_port(4200), free_port(5000)
    api = f"http://127.0.0.1:{pport}/api"
    env = os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_MEMO_STORE_PATH": str(tmp / "prefect" / "memo_store.toml"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
    }
    procs = []
    try:
        print(f"ui-check: Prefect on {api}, MLflow on http://127.0.0.1:{mport} (state in {tmp})")
        procs.append(start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(pport)], env, tmp / "prefect.log"))  # fmt: skip
        wait_for("the Prefect server", lambda: httpx.get(f"{api}/health").status_code == 200, 180)
        procs.append(start([sys.executable, "flows/deploy.py", "--params", str(project / "params.yaml")], env, tmp / "serve.log"))  # fmt: skip
        dep = wait_for(
            "the deployment",
            lambda: (httpx.post(f"{api}/deployments/filter", json={}).json() or [None])[0],
            120,
        )
        if deployment_only:
            OUT.mkdir(parents=True, exist_ok=True)
            pw, chrome = browser()
            try:
                page = chrome.new_page(viewport={"width": 1500, "height": 950})
                shoot_deployment(page, f"http://127.0.0.1:{pport}", api, dep)
            finally:
                chrome.close()
                pw.stop()
            return
        run = httpx.post(
            f"{api}/deployments/{dep['id']}/create_flow_run", json={"parameters": {"overrides": TINY}}
        ).json()
        print(f"ui-check: flow run {run['name']} triggered with {len(TINY)} overrides; waiting for it")

        def finished():
            state = httpx.get(f"{api}/flow_runs/{run['id']}").json()["state"]["type"]
            return state if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        state = wait_for("the flow run", finished, 1800)
        print(f"ui-check: flow run {state}")
        db = f"sqlite:///{project / 'mlflow.db'}"
        procs.append(start([str(BIN / "mlflow"), "server", "--backend-store-uri", db, "--host", "127.0.0.1", "--port", str(mport)], env, tmp / "mlflow.log", cwd=project))  # fmt: skip
        murl = f"http://127.0.0.1:{mport}"
        wait_for("the MLflow server", lambda: httpx.get(f"{murl}/health").status_code == 200, 120)
        exps = httpx.post(f"{murl}/api/2.0/mlflow/experiments/search", json={"max_results": 10}).json()
        exp = next(e for e in exps["experiments"] if e["name"] == "ui-check")
        OUT.mkdir(parents=True, exist_ok=True)
        arts = httpx.post(
            f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
        ).json()
        art = next((a for a in arts if a["key"] == "counterfactual-iter-001"), arts[0] if arts else None)
        print("ui-check: screenshots")
        pw, chrome = browser()
        try:
            page = chrome.new_page(viewport={"width": 2000, "height": 700})
            mlflow_runs_table(
                page,
                f"{murl}/#/experiments/{exp['experiment_id']}/runs?workflowType=machine_learning",
                [
                    "success",
                    "bank/size",
                    "edits/scored",
                    "edits/committed",
                    "review/valid_edit_share",
                    "train/loss",
                ],
            )
            prefect = f"http://127.0.0.1:{pport}"
            page.set_viewport_size({"width": 1500, "height": 950})
            shoot_deployment(page, prefect, api, dep)
            page.set_viewport_size({"width": 1500, "height": 1300})  # the logs
            shoot(
                page,
                f"{prefect}/runs/flow-run/{run['id']}?tab=Logs",
                "prefect-flow-run-logs",
                "collect-iter_001: started",
            )
            page.set_viewport_size({"width": 1500, "height": 800})
            if art:
                shoot(page, f"{prefect}/artifacts/artifact/{art['id']}", "prefect-artifact", "edits/scored")
        finally:
            chrome.close()
            pw.stop()
        summary = {"flow_run_state": state, "artifacts": sorted(a["key"] for a in arts)}
        print(json.dumps(summary))
        if state != "COMPLETED":
            raise SystemExit(f"ui-check: the flow run ended {state}; see {tmp / 'serve.log'}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
