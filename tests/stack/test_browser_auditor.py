"""The auditor's tools in a real browser (Debian's Chromium driven by Playwright) on the Celery
stack, signed in through the FAB auth manager as the Auditor user airflow-init creates: after a
run, the auditor opens a request's drill-down inside the Airflow UI, asks "was this person
erased?", and downloads the request's signed receipt, which ``gdpr-erasure receipt verify``
accepts.

Screenshots ``auditor-request.png`` and ``auditor-lookup.png`` go to ``$GDPR_SCREENSHOTS_DIR``
(``make screenshots`` points it at docs/screenshots, which the README shows) or to a temporary
directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect
from support.browser import CHAIN_CHECK_MS, sign_in, to_last_page

from gdpr_erasure.receipts import generate_signing_key

CLI = str(Path(sys.executable).parent / "gdpr-erasure")
# Email and phone, no Stripe customer: the lookup's two fields are all the request gave.
PERSON = "no_stripe"


def test_the_auditor_opens_a_request_looks_a_person_up_and_downloads_a_receipt(
    celery_stack, browser_page, shots, tmp_path
):
    stack, page = celery_stack, browser_page
    stack.sandbox("POST", "/reset", json={"regulation_seconds": 2})
    [request_id] = stack.submit([PERSON], prefix="audit")
    run_id = stack.trigger_dag()
    assert stack.wait_for_dag_run(run_id, 240)["state"] == "success", stack.diagnostics()
    person = stack.people[PERSON]

    # A receipt key, added as an admin would in the UI (compose creates none: docs/deployment.md).
    receipts, receipts_pem = generate_signing_key("receipts-browser-test")
    stack.api(
        "POST",
        "/connections",
        json={
            "connection_id": "gdpr_receipt_key",
            "conn_type": "generic",
            "login": receipts.key_id,
            "password": receipts_pem,
        },
        expect=(200, 201),
    )

    sign_in(page, stack.api_url, *stack.auditor)
    # The drill-down, from the ledger's list, inside the UI (Browse > GDPR audit).
    page.goto(f"{stack.api_url}/plugin/gdpr-audit")
    frame = page.frame_locator("iframe").first
    expect(frame.locator("#chain-status")).to_contain_text("Audit chain intact", timeout=CHAIN_CHECK_MS)
    to_last_page(frame)
    frame.locator(f'#records a:text-is("{request_id}")').click()
    timeline = frame.locator("#timeline")
    expect(timeline).to_contain_text("Received")
    expect(timeline).to_contain_text("Resolve identity (resolve_identity)")
    expect(timeline).to_contain_text("Audit record written")
    expect(frame.locator("#inclusion")).to_contain_text("Covered by the latest signed tree head")
    expect(frame.locator("#runs")).to_be_visible()
    content = frame.locator("body").inner_text()
    for identifier in (person["email"], person["phone"]):
        assert identifier.lower() not in content.lower()
    page.screenshot(path=str(shots / "auditor-request.png"))

    # "Was this person erased?": typed in another spelling, answered by the server.
    page.goto(f"{stack.api_url}/plugin/gdpr-audit")
    frame = page.frame_locator("iframe").first
    frame.locator("#lookup-email").fill(person["email"].upper())
    phone = person["phone"]
    frame.locator("#lookup-phone").fill(f"{phone[:3]} {phone[3:6]} {phone[6:]}")
    frame.locator("#lookup-submit").click()
    result = frame.locator("#lookup-result")
    expect(result).to_contain_text("Erased: 1 record(s) match the email and phone entered.")
    expect(frame.locator(f'#lookup-records tr[data-request-id="{request_id}"]')).to_have_count(1)
    answer = frame.locator("body").inner_text().lower()
    assert person["email"].lower() not in answer and person["phone"] not in answer
    page.screenshot(path=str(shots / "auditor-lookup.png"))

    # Someone who was never erased.
    frame.locator("#lookup-email").fill("never.asked@example.org")
    frame.locator("#lookup-submit").click()
    expect(frame.locator("#lookup-result")).to_contain_text("No record")

    # The request's signed receipt, downloaded from its page (the UI's iframe allows downloads).
    page.goto(f"{stack.api_url}/plugin/gdpr-audit")
    frame = page.frame_locator("iframe").first
    to_last_page(frame)
    frame.locator(f'#records a:text-is("{request_id}")').click()
    with page.expect_download() as download:
        frame.locator("#receipt-download").click()
    receipt = tmp_path / f"{request_id}.receipt.json"
    download.value.save_as(receipt)
    assert json.loads(receipt.read_text())["receipt"]["request_id"] == request_id
    (tmp_path / "receipts.pem").write_text(receipts.public_pem())
    server_env = {**stack.env["airflow-apiserver"], "_AIRFLOW_PROCESS_CONTEXT": "server"}
    ledger_pem = subprocess.run(
        [CLI, "audit", "public-key"], env=server_env, capture_output=True, text=True, timeout=120
    )
    assert ledger_pem.returncode == 0, ledger_pem.stderr[-2000:]
    (tmp_path / "ledger.pem").write_text(ledger_pem.stdout)
    keys = [
        "--public-key",
        str(tmp_path / "receipts.pem"),
        "--ledger-public-key",
        str(tmp_path / "ledger.pem"),
    ]
    verified = subprocess.run(
        [CLI, "receipt", "verify", str(receipt), *keys],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    assert f"valid receipt for {request_id}" in verified.stdout
