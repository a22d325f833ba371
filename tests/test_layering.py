"""The package's layers import downwards only: sensors and triggers never import operators.

The batch runtime (``gdpr_erasure.batch``) sits below operators and sensors; the trigger
(``triggers/``) below the sensors, and the proof checks (``proofs/``) below the trigger. Read
from the source with ``ast``, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gdpr_erasure

PACKAGE_DIR = Path(gdpr_erasure.__file__).resolve().parent

#: Module (or package) -> what it must never import.
FORBIDDEN = {
    "gdpr_erasure.sensors": ("gdpr_erasure.operators",),
    "gdpr_erasure.triggers": ("gdpr_erasure.operators", "gdpr_erasure.sensors"),
    "gdpr_erasure.proofs": (
        "gdpr_erasure.operators",
        "gdpr_erasure.sensors",
        "gdpr_erasure.triggers",
        "gdpr_erasure.batch",
    ),
    "gdpr_erasure.batch": ("gdpr_erasure.operators", "gdpr_erasure.sensors", "gdpr_erasure.triggers"),
    "gdpr_erasure.steps": (
        "gdpr_erasure.operators",
        "gdpr_erasure.sensors",
        "gdpr_erasure.triggers",
        "gdpr_erasure.batch",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, as absolute dotted names; for
    ``from X import Y`` both ``X`` and ``X.Y`` (Y may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def offending(module: str, imports: set[str]) -> list[str]:
    """The imports of ``module`` that its layer forbids."""
    bad: list[str] = []
    for layer, forbidden in FORBIDDEN.items():
        if module == layer or module.startswith(layer + "."):
            bad += [
                name
                for name in sorted(imports)
                if any(name == f or name.startswith(f + ".") for f in forbidden)
            ]
    return bad


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_it(path):
    module = module_name(path)
    imports = imported_modules(path.read_text(), module, is_package=path.name == "__init__.py")
    assert offending(module, imports) == [], f"{module} imports a layer above it"


def test_every_layer_named_exists():
    modules = {module_name(p) for p in package_modules()}
    for layer in FORBIDDEN:
        assert layer in modules, layer


@pytest.mark.parametrize(
    "source",
    [
        "from gdpr_erasure.operators.base import ComplianceStoreMixin",
        "import gdpr_erasure.operators.base",
        "from gdpr_erasure import operators",
        "from ..operators import base",
        "def later():\n    from gdpr_erasure.operators.ledger_record import open_steps\n",
    ],
)
def test_the_check_catches_a_sensor_importing_an_operator(source):
    """The check itself: each way of re-adding the import is caught."""
    imports = imported_modules(source, "gdpr_erasure.sensors.base")
    assert offending("gdpr_erasure.sensors.base", imports)


def test_the_check_leaves_allowed_imports_alone():
    source = "from gdpr_erasure.batch import run_batch\nfrom gdpr_erasure.triggers.proof import X\n"
    assert offending("gdpr_erasure.sensors.base", imported_modules(source, "gdpr_erasure.sensors.base")) == []
