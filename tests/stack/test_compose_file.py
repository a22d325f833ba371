"""docker-compose.yaml, .env.example and the Dockerfile: valid against the Compose
Specification's schema, consistent with each other, with the tested Airflow, and free of secrets.
(The stack itself runs in test_stack_celery.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest

from devstack.composestack import (
    AIRFLOW_SERVICES,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    INIT_SERVICE,
    REPO_ROOT,
    InterpolationError,
    interpolate,
    interpolate_tree,
    load_compose,
    read_env_file,
    service_command,
    service_environment,
    variables_used,
)
from gdpr_erasure import deploy
from gdpr_erasure.deploy import Settings, build_connections, compliance_database

SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
# Names of secret settings: .env.example must leave them empty, the compose file must require them.
SECRET_NAME = re.compile(r"PASSWORD$|SECRET|TOKEN|FERNET|_KEY$")
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_ADMIN_PASSWORD",
    "GDPR_HASH_KEY",
}


def filled_env() -> dict[str, str]:
    """.env.example with a made-up value for every secret (what an operator's .env looks like)."""
    values = read_env_file()
    return {
        key: (f"test-{key.lower()}-0123456789abcdef" if SECRET_NAME.search(key) else v)
        for key, v in values.items()
    }


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def test_the_compose_file_is_valid_against_the_compose_specification(schema, compose):
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for document in (compose, interpolate_tree(compose, filled_env())):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_catches_mistakes(schema, compose):
    """The validation is not vacuous: typical slips are reported."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    broken = json.loads(json.dumps(compose))
    broken["services"]["airflow-worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["airflow-triggerer"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) == 2


def test_every_variable_is_in_env_example_and_every_entry_is_used():
    used, documented = variables_used(), set(read_env_file())
    assert used - documented == set(), "add these to .env.example"
    assert documented - used == set(), "unused in docker-compose.yaml"


def test_env_example_commits_no_secret():
    secrets = {key: value for key, value in read_env_file().items() if SECRET_NAME.search(key)}
    assert set(secrets) >= REQUIRED_SECRETS
    assert {key for key, value in secrets.items() if value} == set()


def test_compose_refuses_to_start_without_the_secrets():
    for name in REQUIRED_SECRETS:
        env = filled_env()
        env[name] = ""
        with pytest.raises(InterpolationError, match=name):
            interpolate_tree(load_compose(), env)
    interpolate_tree(load_compose(), filled_env())  # and starts with them


def test_dotenv_stays_out_of_git_and_the_image():
    for ignore_file in (".gitignore", ".dockerignore"):
        lines = (REPO_ROOT / ignore_file).read_text().splitlines()
        assert ".env" in lines, ignore_file
    assert ".venv" in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_the_stack_runs_every_component_on_one_shared_configuration(compose):
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        INIT_SERVICE,
        *AIRFLOW_SERVICES,
        "sandbox",
    } <= set(services)
    env = filled_env()
    commands = {name: service_command(compose, name, env) for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
        "airflow-worker": ["celery", "worker"],
    }
    common = service_environment({"services": {"x": compose["x-airflow-common"]}}, "x", env)
    assert common["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert common["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert common["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:")
    for name in (INIT_SERVICE, *AIRFLOW_SERVICES):
        own = service_environment(compose, name, env)
        assert {key: own[key] for key in common} == common, name  # same secrets, same databases
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        if name != INIT_SERVICE:
            assert depends[INIT_SERVICE]["condition"] == "service_completed_successfully", name
    # Provider credentials reach airflow-init only (it stores them encrypted as connections).
    for name in AIRFLOW_SERVICES:
        assert not any(
            key.startswith(("STRIPE_", "TWILIO_", "SEGMENT_"))
            for key in service_environment(compose, name, env)
        )
    # The compliance store is a database of its own, not Airflow's.
    init_env = service_environment(compose, INIT_SERVICE, env)
    assert init_env["COMPLIANCE_DB_NAME"] != env["AIRFLOW_DB_NAME"]


def test_the_pipeline_runs_as_a_role_that_does_not_own_the_compliance_store(compose):
    """airflow-init runs db init as the owner and grants the pipeline's role exactly what it needs;
    the owner's password reaches airflow-init only, and only the pipeline's role is a connection."""
    env = filled_env()
    # An operator's ids next to the secrets filled_env made up (deploy init requires them then).
    env.update(
        STRIPE_ACCOUNT_ID="acct_1Test",
        TWILIO_API_KEY_SID="SK" + "0" * 32,
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_MEMORY_STORE_ID="mem_store_test",
        SEGMENT_SPACE_ID="spa_test",
        SEGMENT_CHECK_USER_ID="gdpr-erasure-check",
    )
    assert env["COMPLIANCE_DB_OWNER"] != env["COMPLIANCE_DB_USER"]
    for name in (*AIRFLOW_SERVICES, "flower", "airflow-cli"):
        own = service_environment(compose, name, env)
        assert not any(key.startswith("COMPLIANCE_DB_") for key in own), name
    init_env = service_environment(compose, INIT_SERVICE, env)
    assert init_env["COMPLIANCE_DB_OWNER_PASSWORD"] == env["COMPLIANCE_DB_OWNER_PASSWORD"]
    assert "gdpr-erasure deploy init\n" in service_command(compose, INIT_SERVICE, env)[-1]
    # What deploy init makes of this environment (tests/test_deploy_init.py runs it on PostgreSQL:
    # the owner owns the store, the pipeline's role owns nothing): the pipeline's role is the only
    # database role in a connection, and the owner's password is in none.
    settings = Settings(init_env)
    db = compliance_database(settings)
    assert (db.owner, db.user) == (env["COMPLIANCE_DB_OWNER"], env["COMPLIANCE_DB_USER"])
    connections = build_connections(db, settings, say=lambda line: None)
    assert connections["compliance_db"]["login"] == env["COMPLIANCE_DB_USER"]
    assert connections["compliance_db"]["password"] == env["COMPLIANCE_DB_PASSWORD"]
    assert env["COMPLIANCE_DB_OWNER_PASSWORD"] not in json.dumps(connections)
    assert not any(conn.get("login") == db.owner for conn in connections.values())


def test_the_stack_runs_a_production_auth_manager_with_an_auditor_role(compose):
    """FAB, not the simple auth manager (which Airflow documents as for development only): the
    Auditor role is synced after every migration, users are created with passwords from .env that
    reach airflow-init only and never a command line."""
    env = filled_env()
    common = service_environment({"services": {"x": compose["x-airflow-common"]}}, "x", env)
    assert common["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert not any(key.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER") for key in common)
    script = service_command(compose, INIT_SERVICE, env)[-1]
    assert script.index("airflow db migrate") < script.index("gdpr-erasure roles sync")
    assert script.index("gdpr-erasure roles sync") < script.index("gdpr-erasure deploy init")
    # deploy init creates the users through FAB's security manager, with passwords it reads from
    # its environment: no password in a process list.
    deploy_source = Path(deploy.__file__).read_text()
    assert "ensure_user(" in deploy_source and '"Auditor"' in deploy_source
    for text in (script, deploy_source):
        assert "users create" not in text
    for name in (*AIRFLOW_SERVICES, "flower", "airflow-cli"):
        own = service_environment(compose, name, env)
        assert "AIRFLOW_ADMIN_PASSWORD" not in own and "AIRFLOW_AUDITOR_PASSWORD" not in own, name


def test_the_init_script_parses_and_runs_its_steps_in_order():
    """Migrate, sync the Auditor role, pools in the background, deploy init (gdpr_erasure/deploy.py:
    the compliance database, connections, users, db init and the grant), then wait for the pools.
    The script holds no inline Python: deploy init is a tested command."""
    compose = load_compose()
    script = service_command(compose, INIT_SERVICE, filled_env())[-1]
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    steps = [
        "airflow db migrate",
        "gdpr-erasure roles sync",
        "gdpr-erasure pools create &",
        "gdpr-erasure deploy init",
    ]
    assert [script.index(step) for step in steps] == sorted(script.index(step) for step in steps)
    assert script.index("gdpr-erasure deploy init") < script.index('wait "$pools"')
    assert "python" not in script and "<<" not in script
    from gdpr_erasure.cli import build_parser

    assert build_parser().parse_args(["deploy", "init"]).only is None  # every step


def test_the_sandbox_service_is_optional_and_private(compose):
    from gdpr_erasure.cli import build_parser

    sandbox = compose["services"]["sandbox"]
    assert sandbox["profiles"] == ["sandbox"]
    assert all(port.startswith("127.0.0.1:") for port in interpolate_tree(sandbox["ports"], filled_env()))
    command = interpolate_tree(sandbox["command"], filled_env())
    assert command[0] == "gdpr-erasure"
    args = build_parser().parse_args(command[1:])
    assert args.allow_non_loopback is True
    assert args.host == "0.0.0.0"
    # airflow-init waits for it only when the profile is on.
    assert compose["services"][INIT_SERVICE]["depends_on"]["sandbox"]["required"] is False


def test_the_image_is_the_airflow_the_tests_ran():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(?:slim-)?(\S+)-python(\d+\.\d+)$", dockerfile, re.M)
    assert base, "the base image must be a pinned apache/airflow tag"
    airflow_version, python_version = base.groups()
    assert airflow_version == version("apache-airflow")
    assert f"apache-airflow=={airflow_version}" in (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "pip install --no-cache-dir -r /opt/gdpr-erasure/requirements.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps /opt/gdpr-erasure" in dockerfile
    compose = load_compose()
    assert compose["x-airflow-common"]["build"]["context"] == "."
    assert interpolate_tree(compose["x-airflow-common"]["build"], filled_env())["target"] == "airflow"


def test_only_the_sandbox_target_holds_the_sandbox():
    """The production image (target ``airflow``, also the default one) copies only the runtime
    package; the sandbox service's target adds gdpr-erasure[sandbox] on top."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    by_name = {
        stage.split()[2] if " AS " in stage.splitlines()[0] else "(default)": stage for stage in stages
    }
    assert set(by_name) == {"airflow", "sandbox", "(default)"}
    assert by_name["(default)"].splitlines()[0] == "airflow"  # the last stage: docker build . gives it
    copied = re.findall(r"^COPY .*? (\S+) /opt/gdpr-erasure/\S*$", by_name["airflow"], re.M)
    assert [path for path in copied if path.startswith("include")] == ["include/gdpr_erasure/"]
    assert (
        "include/sandbox/" in by_name["sandbox"]
        and by_name["sandbox"].splitlines()[0] == "airflow AS sandbox"
    )
    compose = load_compose()
    assert compose["services"]["sandbox"]["build"] == {"context": ".", "target": "sandbox"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${A}", "a"),
        ("$A/$B", "a/"),
        ("${B:-dflt}", "dflt"),
        ("${B-dflt}", ""),
        ("${C-dflt}", "dflt"),
        ("${A:+alt}", "alt"),
        ("${B:+alt}", ""),
        ("${B+alt}", "alt"),
        ("$${HOSTNAME} $$", "${HOSTNAME} $"),
        ("x${A:?need A}y", "xay"),
    ],
)
def test_interpolation_follows_the_compose_specification(template, expected):
    assert interpolate(template, {"A": "a", "B": ""}) == expected


@pytest.mark.parametrize("template", ["${B:?need B}", "${C?need C}", "${}"])
def test_interpolation_errors(template):
    with pytest.raises(InterpolationError):
        interpolate(template, {"B": ""})


def test_the_sandbox_clis_pass_the_non_loopback_flag(monkeypatch):
    import sandbox.__main__ as sandbox_main
    import sandbox.server
    from gdpr_erasure.cli import main

    calls = []
    monkeypatch.setattr(sandbox.server, "serve", lambda **kwargs: calls.append(kwargs) or 0)
    monkeypatch.setattr(sandbox_main, "serve", lambda **kwargs: calls.append(kwargs) or 0)
    assert main(["sandbox", "serve", "--port", "0"]) == 0
    assert main(["sandbox", "serve", "--host", "0.0.0.0", "--allow-non-loopback"]) == 0
    assert sandbox_main.main(["serve", "--host", "0.0.0.0", "--allow-non-loopback"]) == 0
    assert [call["allow_non_loopback"] for call in calls] == [False, True, True]


def test_sandbox_serve_says_in_one_line_to_install_the_extra_where_it_is_missing(monkeypatch, capsys):
    from gdpr_erasure.cli import main

    for name in ("sandbox", "sandbox.server"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    assert main(["sandbox", "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "install gdpr-erasure[sandbox]" in err


def test_the_sandbox_still_refuses_other_hosts_by_default(capsys):
    from sandbox.server import serve

    assert serve(host="0.0.0.0", port=0) == 2
    assert "only loopback" in capsys.readouterr().err


def test_compose_file_and_schema_provenance_are_recorded():
    readme = (Path(__file__).parent / "README.md").read_text()
    assert "compose-spec/compose-spec" in readme
    assert re.search(r"\b[0-9a-f]{40}\b", readme)
    assert COMPOSE_FILE.exists() and ENV_EXAMPLE.exists()
