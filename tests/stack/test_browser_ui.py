"""The Airflow UI in a real browser (Debian's Chromium driven by Playwright) on the Celery stack,
signed in through the FAB auth manager the compose file runs: an admin triggers the DAG from its
Params form and waits for the run; an auditor (the Auditor role) opens the auditor page.

Screenshots go to ``$GDPR_SCREENSHOTS_DIR`` (``make screenshots`` points it at docs/screenshots,
which the README shows) or to a temporary directory.
"""

from __future__ import annotations

import os
import subprocess

from playwright.sync_api import expect
from support.browser import CHAIN_CHECK_MS, sign_in, to_last_page

PEOPLE = ("person-003", "no_stripe")


def test_trigger_from_the_params_form_and_review_the_audit_page(celery_stack, browser_page, shots):
    stack, page = celery_stack, browser_page
    stack.sandbox("POST", "/reset", json={"regulation_seconds": 2})
    ids = stack.submit(list(PEOPLE), prefix="ui")
    stack.unpause()
    before = {
        run["dag_run_id"]
        for run in stack.api("GET", "/dags/gdpr_erasure/dagRuns", expect=200).json()["dag_runs"]
    }

    sign_in(page, stack.api_url, stack.username, stack.password)

    # Trigger from the DAG page's Params form, changing a parameter.
    page.goto(f"{stack.api_url}/dags/gdpr_erasure")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-state=open]")
    expect(dialog).to_contain_text("Run Parameters")
    dialog.locator("input[name=element_max_requests]").fill("25")
    page.screenshot(path=str(shots / "trigger-params-form.png"))
    dialog.get_by_role("button", name="Trigger").last.click()

    # The run the form created, followed to its end over the REST API.
    run = stack.wait_for(
        "the run triggered from the UI",
        lambda: next(
            (
                r
                for r in stack.api("GET", "/dags/gdpr_erasure/dagRuns", expect=200).json()["dag_runs"]
                if r["dag_run_id"] not in before
            ),
            None,
        ),
        60,
    )
    assert run["conf"]["max_requests"] == 25  # the value typed into the form
    finished = stack.wait_for_dag_run(run["dag_run_id"], 240)
    assert finished["state"] == "success", stack.diagnostics()
    page.goto(f"{stack.api_url}/dags/gdpr_erasure/runs/{run['dag_run_id']}")
    page.wait_for_timeout(2000)
    page.screenshot(path=str(shots / "dag-run.png"))

    # The auditor signs in (the Auditor role) and reads the page inside the UI (Browse > GDPR audit)...
    page.context.clear_cookies()
    sign_in(page, stack.api_url, *stack.auditor)
    page.goto(f"{stack.api_url}/plugin/gdpr-audit")
    frame = page.frame_locator("iframe").first
    expect(frame.locator("#chain-status")).to_contain_text("Audit chain intact", timeout=CHAIN_CHECK_MS)
    page.screenshot(path=str(shots / "auditor-in-airflow.png"))
    # ...and on its own.
    page.goto(f"{stack.api_url}/gdpr-audit/")
    expect(page.locator("#chain-status")).to_contain_text("Audit chain intact", timeout=CHAIN_CHECK_MS)
    to_last_page(page)
    for request_id in ids:
        expect(page.locator("#records")).to_contain_text(request_id)
    page.screenshot(path=str(shots / "auditor-page.png"), full_page=True)


def test_the_auditor_page_answers_auditors_and_admins_only_and_auditors_write_nothing(celery_stack):
    import requests

    stack = celery_stack
    response = requests.get(f"{stack.api_url}/gdpr-audit/", timeout=30)
    assert response.status_code == 401

    # A plain viewer, created as an operator would (Airflow's own users command).
    viewer_password = "viewer-" + os.urandom(8).hex()
    created = subprocess.run(
        [
            "airflow",
            "users",
            "create",
            "--role",
            "Viewer",
            "--username",
            "viewer",
            "--password",
            viewer_password,
            "--firstname",
            "V",
            "--lastname",
            "Iewer",
            "--email",
            "viewer@localhost",
        ],
        env=stack.env["airflow-apiserver"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr[-2000:]

    def records(token: str) -> requests.Response:
        return requests.get(
            f"{stack.api_url}/gdpr-audit/api/records",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    auditor_token = stack.login(*stack.auditor)
    assert records(stack.token()).status_code == 200
    answer = records(auditor_token)
    assert answer.status_code == 200 and "summary" in answer.json()
    export = requests.get(
        f"{stack.api_url}/gdpr-audit/export?format=json",
        headers={"Authorization": f"Bearer {auditor_token}"},
        timeout=30,
    )
    assert export.status_code == 200
    refused = records(stack.login("viewer", viewer_password))
    assert refused.status_code == 403
    assert "GDPR Audit" in refused.json()["detail"]

    # The auditor reads the DAG and its runs, and can change nothing.
    headers = {"Authorization": f"Bearer {auditor_token}"}
    base = f"{stack.api_url}/api/v2/dags/gdpr_erasure"
    assert requests.get(f"{base}/dagRuns", headers=headers, timeout=30).status_code == 200
    assert (
        requests.post(f"{base}/dagRuns", json={"logical_date": None}, headers=headers, timeout=30).status_code
        == 403
    )
    assert requests.patch(base, json={"is_paused": True}, headers=headers, timeout=30).status_code == 403
