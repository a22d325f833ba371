"""GDPR right-to-be-forgotten pipeline for Stripe, Twilio and Twilio Segment on Apache Airflow 3.

Layers, with dependencies pointing one way::

    intake -> store -> DAG -> operators / sensors / triggers -> hooks -> external APIs

The package is installed into every Airflow component (scheduler, workers, triggerer, API
server) so that triggers and hooks import the same code everywhere.
"""

__version__ = "0.1.0"
