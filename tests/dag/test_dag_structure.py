"""The DAG's shape and the triggers' serialisation, checked without running anything."""

from __future__ import annotations

import importlib

import pytest

from gdpr_erasure.triggers.batch import BatchProofTrigger
from gdpr_erasure.triggers.segment import SegmentRegulationTrigger, failure_reason
from gdpr_erasure.triggers.stripe import StripeCustomerDeletedTrigger, StripeRedactionJobTrigger
from gdpr_erasure.triggers.twilio import TwilioProfileDeletedTrigger


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder="dags")
    assert bag.import_errors == {}
    return bag.get_dag("gdpr_erasure")


def test_dag_reads_as_the_business_process(dag):
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    assert set(dag.params) == {"max_requests", "batch_size", "request_ids", "dry_run"}
    group = [t.task_id for t in dag.tasks if t.task_id.startswith("erase_batch.")]
    assert group == [
        "erase_batch.resolve_identity",
        "erase_batch.purge_twilio_profile",
        "erase_batch.purge_twilio_history",
        "erase_batch.erase_segment",
        "erase_batch.redact_stripe",
        "erase_batch.verify_twilio_profile",
        "erase_batch.verify_segment",
        "erase_batch.verify_stripe",
        "erase_batch.write_audit",
    ]
    resolve = dag.get_task("erase_batch.resolve_identity")
    assert resolve.downstream_task_ids == {
        "erase_batch.purge_twilio_profile",
        "erase_batch.purge_twilio_history",
        "erase_batch.erase_segment",
        "erase_batch.redact_stripe",
    }
    assert dag.get_task("summarize_run").trigger_rule == "all_done"
    assert dag.get_task("erase_batch.write_audit").trigger_rule == "all_done"
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


@pytest.mark.parametrize(
    "trigger",
    [
        StripeCustomerDeletedTrigger(["cus_a", "cus_b"], "stripe_x", poll_interval=3),
        StripeRedactionJobTrigger("prj_1", "stripe_x", poll_interval=4),
        SegmentRegulationTrigger("reg_1", "segment_x", poll_interval=5),
        TwilioProfileDeletedTrigger(["mem_profile_1"], "twilio_x", poll_interval=6),
        BatchProofTrigger.of(
            {
                "req-1": SegmentRegulationTrigger("reg_1", "segment_x", poll_interval=5),
                "req-2": StripeCustomerDeletedTrigger(["cus_a"], "stripe_x", poll_interval=5),
            },
            poll_interval=5,
            deadline=1_900_000_000.0,
            max_concurrency=4,
        ),
    ],
)
def test_triggers_serialize_to_an_importable_class_and_round_trip(trigger):
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert not module.startswith("dags")  # the triggerer must import it from the package


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
