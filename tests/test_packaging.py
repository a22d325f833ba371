"""What runs in production, and what does not: the gdpr-erasure wheel holds only the runtime package
``gdpr_erasure``, the one every Airflow component imports. The development harnesses
(``devstack``), the API sandbox (its own distribution, the extra ``gdpr-erasure[sandbox]``) and the
benchmark scripts (``include/bench``) stay out of it, and no production code imports them, but
for the sandbox in the two places that serve it or point the connections at it.

The wheel is built for real (pip, about 6 s here) from a copy of the checkout, so a harness added
back to the package, or to ``[tool.setuptools.packages.find]``, fails this test.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME = REPO_ROOT / "include" / "gdpr_erasure"
# Production code that is not in the wheel but runs in every Airflow component (baked into the image).
DEPLOYED_FILES = [*(REPO_ROOT / "dags").glob("*.py"), *(REPO_ROOT / "plugins").glob("*.py")]
DEPLOYED_FILES += [*(REPO_ROOT / "config").glob("*.py")]
NOT_PRODUCTION = ("devstack", "bench", "sandbox")
HARNESS_NAMES = {"devstack", "sandbox", "bench", "demo", "composestack", "localstack"}
# The only production code that may import the sandbox, lazily and with a one-line error when the
# extra is missing: the command that serves it and deploy init's GDPR_SANDBOX_URL branch.
SANDBOX_IMPORTERS = {
    ("gdpr_erasure/cli.py", "_cmd_sandbox_serve"),
    ("gdpr_erasure/deploy.py", "sandbox_provider_connections"),
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """``pip wheel --no-deps`` of a copy of pyproject.toml and include/ (the build writes build/ and
    egg-info next to its source: not into the checkout other tests import from)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(
        REPO_ROOT / "include",
        source / "include",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [built] = out.glob("gdpr_erasure-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_the_wheel_holds_the_runtime_package_and_nothing_else(wheel):
    names = wheel.namelist()
    files = [name for name in names if ".dist-info/" not in name]
    outside = [name for name in files if not name.startswith("gdpr_erasure/")]
    assert outside == [], "only gdpr_erasure/ belongs in the wheel"
    # A benchmark or harness inside the package is not production code either: it belongs in
    # include/bench or include/devstack.
    harnesses = {name for name in files if set(PurePosixPath(name).with_suffix("").parts) & HARNESS_NAMES}
    assert harnesses == set(), "harness, demo, sandbox or benchmark modules in the wheel"
    [top_level] = [name for name in names if name.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["gdpr_erasure"]


def test_the_wheel_holds_every_module_of_the_runtime_package(wheel):
    """And all of it: what a production component imports is in the wheel."""
    expected = {
        path.relative_to(RUNTIME.parent).as_posix()
        for path in RUNTIME.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert expected <= set(wheel.namelist())


def test_the_wheel_holds_the_files_the_runtime_package_reads(wheel):
    """Its data files too: the erasure policy's schema and shipped default are read at every DAG
    parse, and a wheel without them fails the DAG's import everywhere."""
    expected = {
        path.relative_to(RUNTIME.parent).as_posix()
        for path in RUNTIME.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    assert {"gdpr_erasure/policy/schema.json", "gdpr_erasure/policy/default.yaml"} <= expected
    assert expected <= set(wheel.namelist())


def test_the_extra_names_the_sandbox_distribution(wheel):
    [metadata] = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    lines = wheel.read(metadata).decode().splitlines()
    assert "Provides-Extra: sandbox" in lines
    assert any(
        line.startswith("Requires-Dist: gdpr-erasure-sandbox") and 'extra == "sandbox"' in line
        for line in lines
    )


def imports_by_function(source: str) -> list[tuple[str, str]]:
    """``(module imported, enclosing function or "")`` for every import in ``source``, nested ones
    included (a lazy import counts)."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not child.level:
                found.append((child.module or "", function))
            visit(child, function)

    visit(ast.parse(source), "")
    return found


def production_files() -> list[tuple[str, Path]]:
    runtime = [(p.relative_to(RUNTIME.parent).as_posix(), p) for p in RUNTIME.rglob("*.py")]
    deployed = [(p.relative_to(REPO_ROOT).as_posix(), p) for p in DEPLOYED_FILES]
    return sorted((name, path) for name, path in runtime + deployed if "__pycache__" not in path.parts)


@pytest.mark.parametrize(("name", "path"), production_files(), ids=[name for name, _ in production_files()])
def test_production_code_imports_no_harness(name, path):
    bad = []
    for module, function in imports_by_function(path.read_text()):
        top = module.split(".")[0]
        if top in NOT_PRODUCTION and not (top == "sandbox" and (name, function) in SANDBOX_IMPORTERS):
            bad.append(f"{module} (in {function or 'the module'})")
    assert bad == [], f"{name} imports what production does not hold"


def test_the_import_check_catches_a_harness_import():
    source = (
        "from devstack.localstack import person_identifiers\n"
        "def helper():\n    import sandbox.connections\n"
        "def _cmd_sandbox_serve(args):\n    from sandbox.server import serve\n"
    )
    assert imports_by_function(source) == [
        ("devstack.localstack", ""),
        ("sandbox.connections", "helper"),
        ("sandbox.server", "_cmd_sandbox_serve"),
    ]
