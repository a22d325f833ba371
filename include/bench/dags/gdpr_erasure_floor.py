"""
### The Airflow floor (benchmark only)

The erasure DAG's shape with tasks that do nothing: the same claim task, the same mapped group
of nine tasks per batch with the same dependencies and pools, the same two closing tasks. What
this DAG costs per request is what Airflow itself costs; `make bench` compares the real DAG
with it. Not deployed: it lives under include/bench/ and only the benchmark's DAG folder has it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task, task_group

GROUP = {
    "resolve_identity": "segment_api",
    "erase_twilio_profile": "twilio_api",
    "erase_twilio_history": "twilio_api",
    "erase_segment": "segment_api",
    "erase_stripe": "stripe_api",
    "verify_twilio_profile": "twilio_api",
    "verify_segment": "segment_api",
    "verify_stripe": "stripe_api",
    "write_ledger_record": "default_pool",
}


def noop(task_id: str, pool: str):
    @task(task_id=task_id, pool=pool)
    def step(request_ids: list[str]) -> int:
        return len(request_ids)

    return step


with DAG(
    dag_id="gdpr_erasure_floor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["benchmark"],
    params={"requests": Param(200, type="integer"), "batch_size": Param(50, type="integer")},
) as dag:

    @task
    def claim_requests(params=None) -> list[list[str]]:
        ids = [f"floor-{n}" for n in range(int(params["requests"]))]
        size = int(params["batch_size"])
        return [ids[i : i + size] for i in range(0, len(ids), size)]

    @task_group(group_id="erase_batch")
    def erase_batch(request_ids: list[str]):
        t = {task_id: noop(task_id, pool)(request_ids) for task_id, pool in GROUP.items()}
        erasures = [
            t["erase_twilio_profile"],
            t["erase_twilio_history"],
            t["erase_segment"],
            t["erase_stripe"],
        ]
        t["resolve_identity"] >> erasures
        t["erase_twilio_profile"] >> t["verify_twilio_profile"]
        t["erase_segment"] >> t["verify_segment"]
        t["erase_stripe"] >> t["verify_stripe"]
        [t["verify_twilio_profile"], t["erase_twilio_history"], t["verify_segment"], t["verify_stripe"]] >> t[
            "write_ledger_record"
        ]

    claimed = claim_requests()
    erased = erase_batch.expand(request_ids=claimed)

    @task(trigger_rule="all_done")
    def forget_identifiers() -> None:
        return None

    @task(trigger_rule="all_done")
    def summarize_run(batches: list[list[str]]) -> int:
        return sum(len(b) for b in batches)

    erased >> forget_identifiers() >> summarize_run(claimed)
