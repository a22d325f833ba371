"""The DAG's shape, the sensors' settings and the proof checks, checked without running anything."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from gdpr_erasure import steps
from gdpr_erasure.proofs import PROOF_CHECKS
from gdpr_erasure.proofs.base import POLL_SECONDS, POLL_SECONDS_ENV, ProofCheck
from gdpr_erasure.proofs.segment import SegmentRegulationCheck, failure_reason
from gdpr_erasure.proofs.stripe import StripeCustomerDeletedCheck
from gdpr_erasure.proofs.twilio import TwilioMemoryProfileDeletedCheck
from gdpr_erasure.sensors.base import DeletionProofSensor
from gdpr_erasure.triggers.proof import DeletionProofTrigger


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder="dags")
    assert bag.import_errors == {}
    return bag.get_dag("gdpr_erasure")


def test_dag_reads_as_the_business_process(dag):
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    assert set(dag.params) == {"max_requests", "batch_size", "per_request_up_to", "request_ids", "dry_run"}
    group = [t.task_id for t in dag.tasks if t.task_id.startswith("erase_batch.")]
    assert group == [
        "erase_batch.resolve_identity",
        "erase_batch.erase_twilio_profile",
        "erase_batch.erase_twilio_history",
        "erase_batch.erase_segment",
        "erase_batch.erase_stripe",
        "erase_batch.verify_twilio_profile",
        "erase_batch.verify_segment",
        "erase_batch.verify_stripe",
        "erase_batch.write_ledger_record",
    ]
    resolve = dag.get_task("erase_batch.resolve_identity")
    assert resolve.downstream_task_ids == {
        "erase_batch.erase_twilio_profile",
        "erase_batch.erase_twilio_history",
        "erase_batch.erase_segment",
        "erase_batch.erase_stripe",
    }
    assert dag.get_task("summarize_run").trigger_rule == "all_done"
    assert dag.get_task("erase_batch.write_ledger_record").trigger_rule == "all_done"
    # Nothing is claimed before every connection is proven.
    assert dag.get_task("preflight").downstream_task_ids == {"claim_requests"}
    assert dag.get_task("claim_requests").upstream_task_ids == {"preflight"}


def test_every_group_task_is_mapped_over_a_batch_and_named_by_it(dag):
    from jinja2 import Template

    for task in dag.tasks:
        if task.task_id.startswith("erase_batch."):
            assert "request_ids" in task.template_fields, task.task_id
            label = Template(task.map_index_template)
            assert label.render(task={"request_ids": ["req-a"]}) == "req-a"
            assert label.render(task={"request_ids": ["req-a", "req-b", "req-c"]}) == "req-a +2"


def test_sensors_defer_instead_of_holding_a_worker(dag):
    for task_id in ("verify_twilio_profile", "verify_segment", "verify_stripe"):
        assert dag.get_task(f"erase_batch.{task_id}").deferrable is True


def test_sensors_poll_as_often_as_the_one_table_says(dag):
    for task_id, check in (
        ("verify_twilio_profile", TwilioMemoryProfileDeletedCheck),
        ("verify_segment", SegmentRegulationCheck),
        ("verify_stripe", StripeCustomerDeletedCheck),
    ):
        sensor = dag.get_task(f"erase_batch.{task_id}")
        assert sensor.poll_interval == sensor.poke_interval == check.poll_seconds(), task_id


def test_one_table_of_poll_intervals_one_entry_per_check(monkeypatch):
    monkeypatch.delenv(POLL_SECONDS_ENV, raising=False)
    checks = {c.__name__: c for c in ProofCheck.__subclasses__()}
    assert set(POLL_SECONDS) == set(checks)
    # Production: Segment takes hours to days, Stripe and Memory seconds.
    assert {name: check.poll_seconds() for name, check in checks.items()} == {
        "TwilioMemoryProfileDeletedCheck": 10.0,
        "SegmentRegulationCheck": 900.0,
        "StripeCustomerDeletedCheck": 5.0,
        "StripeRedactionJobCheck": 5.0,
        "StripeErasureCheck": 5.0,
    }
    monkeypatch.setenv(POLL_SECONDS_ENV, "0.2")  # the sandbox's knob replaces every one
    assert {check.poll_seconds() for check in checks.values()} == {0.2}
    monkeypatch.setenv(POLL_SECONDS_ENV, "0")
    assert SegmentRegulationCheck.poll_seconds() == 900.0


def test_deferrable_defaults_from_airflows_setting_as_the_providers_do():
    from airflow.sdk import conf

    default = inspect.signature(DeletionProofSensor.__init__).parameters["deferrable"].default
    assert default is conf.getboolean("operators", "default_deferrable", fallback=True)


def test_there_is_one_trigger_and_the_provider_modules_hold_plain_checks():
    from airflow.triggers.base import BaseTrigger

    def triggers_in(package: str) -> set[type]:
        found = set()
        for module in pkgutil.iter_modules(importlib.import_module(package).__path__, f"{package}."):
            for value in vars(importlib.import_module(module.name)).values():
                if isinstance(value, type) and issubclass(value, BaseTrigger) and value is not BaseTrigger:
                    found.add(value)
        return found

    assert triggers_in("gdpr_erasure.triggers") == {DeletionProofTrigger}
    assert triggers_in("gdpr_erasure.proofs") == set()
    assert set(PROOF_CHECKS) == {erasure for erasure, proof in steps.ERASURE_STEPS.items() if proof}


def test_regulation_failure_reason_names_the_destination():
    reason = failure_reason(
        {
            "id": "reg_1",
            "overallStatus": "FAILED",
            "streamStatus": [
                {"destinationStatus": [{"name": "Webhooks", "status": "FAILED", "errString": "410"}]}
            ],
        }
    )
    assert reason == "regulation reg_1 is FAILED (Webhooks: FAILED 410)"


def test_the_preload_imports_every_module_it_names():
    """config/airflow_local_settings.py preloads these; a wrong name would only be a warning."""
    from gdpr_erasure.preload import MODULES, preload

    assert preload() == list(MODULES)
