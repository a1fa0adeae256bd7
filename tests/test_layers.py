"""The import direction is a rule, checked here on every module's source.

cli -> controller/router/sim -> store/providers/policies -> types/spec/errors.
Policies are pure (no I/O libraries, no clock); a cloud SDK is imported only
by its own provider; store, providers and policies never import each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("skyctl", "providers", "policies")

# (prefix, layer): the longest matching prefix decides; higher layers may import lower ones
LAYERS: list[tuple[str, int]] = [
    ("skyctl.cli", 4),
    ("skyctl.cli_sim", 4),
    ("skyctl.cli_router", 4),
    ("skyctl.cli_down", 4),
    ("skyctl.cli_costs", 4),
    ("skyctl.teardown", 4),
    ("skyctl.cli_console", 4),
    ("skyctl.cli_check", 4),
    ("skyctl.cli_logs", 4),
    ("skyctl.cli_status", 4),
    ("skyctl.cli_update", 4),
    ("skyctl.cli_wait", 4),
    ("skyctl.cli_down_progress", 4),
    ("skyctl.cli_exit", 4),
    ("skyctl.cli_spec", 4),
    ("skyctl.client", 4),
    ("skyctl.__main__", 4),
    ("skyctl.controller", 3),
    ("skyctl.supervisor", 3),
    ("skyctl.router", 3),
    ("skyctl.sim", 3),
    ("skyctl.console", 3),
    ("skyctl.store", 2),
    ("providers", 2),
    ("policies", 2),
    ("skyctl", 1),
]
# siblings on layer 2 and 3 that must not import each other (importer, imported)
FORBIDDEN_SIBLINGS = [
    ("skyctl.store", "providers"),
    ("skyctl.store", "policies"),
    ("providers", "skyctl.store"),
    ("providers", "policies"),
    ("policies", "skyctl.store"),
    ("policies", "providers"),
    ("skyctl.router", "skyctl.controller"),
    ("skyctl.router", "skyctl.sim"),
    ("skyctl.sim", "skyctl.controller"),
    ("skyctl.sim", "skyctl.router"),
    ("skyctl.router", "skyctl.console"),
    ("skyctl.sim", "skyctl.console"),
    ("skyctl.console", "skyctl.router"),
    # the supervisor runs the controller and the router as processes, never in-process
    ("skyctl.supervisor", "skyctl.controller"),
    ("skyctl.supervisor", "skyctl.router"),
]
POLICY_BANNED = (
    "aiohttp",
    "sqlalchemy",
    "boto3",
    "botocore",
    "google",
    "azure",
    "kubernetes",
    "time",
    "asyncio",
    "socket",
    "subprocess",
    "requests",
    "random",
)
SDKS = {
    "boto3": "providers.aws",
    "botocore": "providers.aws",
    "google": "providers.gcp",
    "azure": "providers.azure",
    "kubernetes": "providers.kubernetes",
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join(parts), path))
    return out


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return found


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), layer)
    return best[1] if best else None


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


MODULES = _modules()


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_only_go_down_the_layers(module: str, path: Path) -> None:
    mine = _layer(module)
    assert mine is not None
    for imported in _imports(module, path):
        theirs = _layer(imported)
        if theirs is None:
            continue  # third-party or stdlib
        assert theirs <= mine, f"{module} (layer {mine}) imports {imported} (layer {theirs})"
        for importer, banned in FORBIDDEN_SIBLINGS:
            assert not (_within(module, importer) and _within(imported, banned)), (
                f"{module} must not import {imported}"
            )


@pytest.mark.parametrize(
    ("module", "path"),
    [m for m in MODULES if m[0].startswith("policies")],
    ids=[m for m, _ in MODULES if m.startswith("policies")],
)
def test_policies_are_pure(module: str, path: Path) -> None:
    for imported in _imports(module, path):
        top = imported.split(".")[0]
        assert top not in POLICY_BANNED, f"{module} imports {imported}: policies must stay pure"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_cloud_sdks_are_imported_only_by_their_provider(module: str, path: Path) -> None:
    for imported in _imports(module, path):
        owner = SDKS.get(imported.split(".")[0])
        if owner is not None:
            assert module.startswith(owner), f"{module} imports {imported}; only {owner}* may"


def test_the_checker_sees_a_violation() -> None:
    """Guard the guard: an upward import must be caught."""
    assert _layer("skyctl.types") == 1
    assert _layer("skyctl.controller.reconcile") == 3
    assert _layer("skyctl.cli") == 4
    assert _layer("skyctl.controller.reconcile") > _layer("policies.reconcile")  # type: ignore[operator]
    assert _within("providers.aws", "providers")


@pytest.mark.parametrize(
    ("provider", "sdk", "extra"),
    [
        ("aws", ["boto3", "botocore"], "aws"),
        ("gcp", ["google.cloud.compute_v1"], "gcp"),
        ("azure", ["azure.mgmt.compute"], "azure"),
        ("kubernetes", ["kubernetes"], "kubernetes"),
    ],
)
def test_a_provider_imported_without_its_sdk_says_which_extra_to_install(
    provider: str, sdk: list[str], extra: str
) -> None:
    blocked = "".join(f"sys.modules[{name!r}] = None; " for name in sdk)
    code = (
        f"import sys; {blocked}\n"
        f"try:\n    import providers.{provider}\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.startswith("ConfigError"), out.stdout + out.stderr
    assert f"pip install 'skyctl[{extra}]'" in out.stdout
