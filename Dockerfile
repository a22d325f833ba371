# The image every Airflow service of docker-compose.yaml runs: Apache Airflow 3.3.2 with this
# project's pinned requirements and the gdpr-erasure wheel installed (the runtime package only: no
# harness, demo or sandbox), the DAG and the plugins baked in.
#
#   docker compose build            (or: docker build -t gdpr-erasure-airflow .)
#
# Targets: `airflow` (the default, production) and `sandbox`: the same plus the API sandbox
# (gdpr-erasure[sandbox]), for the compose file's sandbox profile only.
#
# The slim variant of apache/airflow:3.3.2 on Python 3.11: requirements.txt is resolved and
# tested (pip check, the test suite) on 3.11, and slim preinstalls no providers that could
# disagree with its pins, so what runs is exactly what the tests ran.
ARG AIRFLOW_IMAGE=apache/airflow:slim-3.3.2-python3.11
FROM ${AIRFLOW_IMAGE} AS airflow

USER root
# The simple auth manager's password file lives here (a named volume, written by airflow-init).
RUN mkdir -p /opt/airflow/auth \
    && chown airflow:0 /opt/airflow/auth \
    && chmod 0770 /opt/airflow/auth
USER airflow

# Dependencies first, so a code change does not reinstall them. Pinning apache-airflow to the
# image's version in requirements.txt keeps pip from replacing the Airflow the image ships.
COPY --chown=airflow:0 requirements.txt /opt/gdpr-erasure/requirements.txt
RUN pip install --no-cache-dir -r /opt/gdpr-erasure/requirements.txt

COPY --chown=airflow:0 pyproject.toml /opt/gdpr-erasure/pyproject.toml
# Only the runtime package's source: the harnesses and the sandbox never enter this image.
COPY --chown=airflow:0 include/gdpr_erasure/ /opt/gdpr-erasure/include/gdpr_erasure/
RUN pip install --no-cache-dir --no-deps /opt/gdpr-erasure \
    && pip check

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
# Local settings: preload the pipeline in each Airflow process, so forked task processes
# inherit its modules instead of importing them per task (docs/benchmarks.md).
COPY --chown=airflow:0 config/ /opt/airflow/config/

# The production image plus the Stripe/Twilio/Segment emulator (distribution gdpr-erasure-sandbox,
# the extra gdpr-erasure[sandbox]): the sandbox service, and Airflow's when GDPR_IMAGE_TARGET=sandbox
# lets airflow-init point the connections at it. Its dependencies are in requirements.txt already.
FROM airflow AS sandbox
COPY --chown=airflow:0 include/sandbox/ /opt/gdpr-erasure/include/sandbox/
RUN pip install --no-cache-dir --no-deps /opt/gdpr-erasure/include/sandbox \
    && pip check

# The default target (docker build . without --target): the production image, no sandbox.
FROM airflow
