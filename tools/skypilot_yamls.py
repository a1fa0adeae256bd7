"""Census of SkyPilot's service YAMLs: how many skyctl takes, and why not the others.

Usage: ``python3 tools/skypilot_yamls.py PATH [--cpus N --memory GB]`` where PATH
is a SkyPilot checkout (or any folder): every ``*.yaml``/``*.yml`` under
``examples/``, ``llm/`` and ``tests/`` (or under PATH itself when it has none of
them) with a top-level ``service:`` key is parsed as ``serve validate`` would,
its blank ``envs``/``secrets`` filled as a user fills them with ``--env KEY`` /
``--secret KEY``; then placed against a machine of ``--cpus``/``--memory`` with
no accelerators (clouds by their catalogs). Prints one line per file that is
not taken, then the counts.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import yaml

from providers.feasibility import Machine, check_placement
from skyctl.errors import SkyctlError
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--cpus", type=float, default=64)
    parser.add_argument("--memory", type=float, default=512, help="GB")
    args = parser.parse_args(argv)
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
            check_placement(spec, {}, machine)
        except SkyctlError as e:
            kind = "no provider here" if "does not run on" not in str(e) else "cloud not run"
            counts[f"valid, {kind}"] += 1
            print(f"valid, {kind}: {name}")
            continue
        counts["valid and placeable"] += 1
    total = sum(counts.values())
    print(f"{total} service YAMLs: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
