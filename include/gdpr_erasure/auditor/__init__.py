"""The auditor's view of the ledger, served inside Airflow's API server (see plugins/)."""
