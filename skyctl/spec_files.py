"""Checks of a parsed spec against this machine, made by ``serve up``/``update``
before a controller starts: the workdir and the files the controller will open
exist here (``serve validate`` checks the spec alone: SkyPilot's READMEs validate
with placeholder paths). Each problem is a one-line SpecError with key and line.
"""

from __future__ import annotations

import os

from skyctl.spec import ServiceSpec
from skyctl.spec_checks import load_yaml, spec_error

__all__ = ["check_files"]


def check_files(spec: ServiceSpec) -> None:
    """The workdir and the files a controller started by this CLI will open (TLS key
    and certificate, the replicas' CA bundle) are there: else a SpecError naming the
    key and its line, now, rather than replicas or an endpoint that never start."""
    files = []
    if spec.service.tls is not None:
        files += [("keyfile", spec.service.tls.keyfile), ("certfile", spec.service.tls.certfile)]
    if spec.service.router.replica_ca_file:
        files.append(("replica_ca_file", spec.service.router.replica_ca_file))
    if spec.workdir:
        workdir = os.path.expanduser(spec.workdir)
        if spec.source and not os.path.isabs(workdir):
            workdir = os.path.join(os.path.dirname(spec.source), workdir)
        if not os.path.isdir(workdir):
            line = load_yaml(spec.yaml_text, spec.source).value_lines.get("workdir")
            raise spec_error(
                f"{workdir}: not a directory (a relative path is relative to the spec file)",
                key="workdir",
                line=line,
                source=spec.source,
            )
    for key, path in files:
        if os.path.isfile(path) and os.access(path, os.R_OK):
            continue
        where = "router" if key == "replica_ca_file" else "tls"
        data = load_yaml(spec.yaml_text, spec.source)["service"][where]
        problem = "is a directory" if os.path.isdir(path) else "no such readable file"
        raise spec_error(
            f"{path}: {problem} (a relative path is relative to the spec file)",
            key=f"service.{where}.{key}",
            line=data.value_lines.get(key),
            source=spec.source,
        )
