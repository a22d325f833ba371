"""The erasure policy is validated whenever the DAG file is parsed: a bad policy is the DAG's
import error, naming the policy's line; a good one configured by Variable or environment is the
one the DAG loads."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from support.policy_files import edited, line_of, write

from gdpr_erasure.policy import DEFAULT_POLICY_PATH, POLICY_ENV

# Absolute, as Airflow's own dags folder names it: a relative path would be a second file to the
# DagBag, which then reports the same import error under both names.
DAG_FILE = str(Path(__file__).resolve().parents[2] / "dags" / "gdpr_erasure_dag.py")


@pytest.fixture
def no_policy_configured(monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_GDPR_ERASURE_POLICY", raising=False)


def parse():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=DAG_FILE)


def test_a_bad_policy_is_an_import_error_naming_its_line(
    airflow_db, tmp_path, monkeypatch, no_policy_configured
):
    text = edited(
        "needed to answer it.\n    action: withhold", "needed to answer it.\n    action: erase  # here"
    )
    policy = write(tmp_path, text)
    monkeypatch.setenv(POLICY_ENV, str(policy))
    bag = parse()
    assert bag.get_dag("gdpr_erasure") is None  # nothing of the DAG, not a DAG with part of a policy
    [(file, error)] = bag.import_errors.items()
    assert file.endswith("gdpr_erasure_dag.py")
    line = line_of(text, "action: erase  # here")
    assert (
        f"PolicyError: {policy}:{line}: live_state.open_dispute.action: 'erase' is not an action for "
        "open_dispute: use one of withhold, hold_for_review"
    ) in error


def test_the_default_policy_parses(airflow_db, no_policy_configured):
    bag = parse()
    assert bag.import_errors == {}
    assert bag.get_dag("gdpr_erasure") is not None
    assert runpy.run_path(DAG_FILE)["ERASURE_POLICY"].source == str(DEFAULT_POLICY_PATH)


def test_the_variable_names_the_policy_the_dag_loads(airflow_db, tmp_path, monkeypatch, no_policy_configured):
    chosen = write(tmp_path, edited("review_after: P60D", "review_after: P90D"))
    monkeypatch.setenv(POLICY_ENV, str(tmp_path / "not-this-one.yaml"))
    monkeypatch.setenv("AIRFLOW_VAR_GDPR_ERASURE_POLICY", str(chosen))  # Variable gdpr_erasure_policy
    policy = runpy.run_path(DAG_FILE)["ERASURE_POLICY"]
    assert (policy.source, policy.live_state["open_dispute"].review_after) == (str(chosen), "P90D")
