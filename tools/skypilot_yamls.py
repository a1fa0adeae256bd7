"""Census of SkyPilot's service YAMLs: how many skyctl takes, and why not the others.

Usage: ``python3 tools/skypilot_yamls.py PATH [--cpus N --memory GB]`` where PATH
is a SkyPilot checkout (or any folder), or ``--git REPO`` for a git directory (a
bare mirror; its HEAD's YAML files are read with ``git show``): every ``*.yaml``/``*.yml`` under
``examples/``, ``llm/`` and ``tests/`` (or under PATH itself when it has none of
them) with a top-level ``service:`` key is parsed as ``serve validate`` would,
its blank ``envs``/``secrets`` filled as a user fills them with ``--env KEY`` /
``--secret KEY``; then placed against a machine of ``--cpus``/``--memory`` with
no accelerators (clouds by their catalogs), its regions and zones checked
against the catalogs (``skyctl.spec_places``: an unknown one counts as refused)
and the providers' own refusals applied (``providers.admission``). Prints one
line per file that is not taken, then the counts.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from providers.admission import check_provider_rules, places_for
from providers.feasibility import Machine, check_placement
from skyctl.errors import SkyctlError
from skyctl.spec_places import check_places
from skyctl.spec_yaml import load_spec_file


def service_yamls(root: Path) -> list[Path]:
    tops = [root / d for d in ("examples", "llm", "tests") if (root / d).is_dir()] or [root]
    found = []
    for top in tops:
        for path in sorted([*top.rglob("*.yaml"), *top.rglob("*.yml")]):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError, OSError):
                continue
            if isinstance(data, dict) and "service" in data:
                found.append(path)
    return found


def blanks(path: Path, key: str) -> dict[str, str]:
    section = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(key)
    if not isinstance(section, dict):
        return {}
    return {
        str(k): "x" for k, v in section.items() if v is None and not str(k).startswith("secrets:")
    }


def checkout_yamls(git_dir: Path, into: Path) -> None:
    """Write HEAD's ``*.yaml``/``*.yml`` under examples/, llm/ and tests/ of ``git_dir``
    into ``into`` (the census needs no work tree)."""
    git = ["git", f"--git-dir={git_dir}"]
    names = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", "HEAD", "examples", "llm", "tests"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    for name in names:
        if name.endswith((".yaml", ".yml")):
            out = into / name
            out.parent.mkdir(parents=True, exist_ok=True)
            blob = subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True, check=False)
            out.write_bytes(blob.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, nargs="?")
    parser.add_argument("--git", type=Path, help="a SkyPilot git directory (bare is fine)")
    parser.add_argument("--cpus", type=float, default=64)
    parser.add_argument("--memory", type=float, default=512, help="GB")
    args = parser.parse_args(argv)
    if (args.path is None) == (args.git is None):
        parser.error("give PATH (a checkout) or --git REPO")
    if args.git is not None:
        with tempfile.TemporaryDirectory(prefix="skypilot-yamls-") as tmp:
            checkout_yamls(args.git, Path(tmp))
            args.path = Path(tmp)
            return census(args)
    return census(args)


def census(args: argparse.Namespace) -> int:
    machine = Machine(args.cpus, args.memory, {})
    counts: collections.Counter[str] = collections.Counter()
    for path in service_yamls(args.path):
        name = path.relative_to(args.path)
        try:
            spec = load_spec_file(path, envs=blanks(path, "envs"), secrets=blanks(path, "secrets"))
        except SkyctlError as e:
            counts["spec refused"] += 1
            print(f"spec refused: {str(e).replace(str(args.path) + '/', '')}")
            continue
        try:
            check_places(spec, places_for(spec, {}))
        except SkyctlError as e:
            counts["spec refused"] += 1
            print(f"spec refused: {str(e).replace(str(args.path) + '/', '')}")
            continue
        try:
            check_placement(spec, {}, machine)
        except SkyctlError as e:
            kind = "no provider here" if "does not run on" not in str(e) else "cloud not run"
            counts[f"valid, {kind}"] += 1
            print(f"valid, {kind}: {name}")
            continue
        try:
            check_provider_rules(spec)
        except SkyctlError as e:
            counts["valid, its provider refuses"] += 1
            print(f"valid, its provider refuses: {str(e).replace(str(args.path) + '/', '')}")
            continue
        counts["valid and placeable"] += 1
    total = sum(counts.values())
    print(f"{total} service YAMLs: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
