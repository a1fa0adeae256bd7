"""The bash script a cloud instance runs at first boot to become a replica.

Every cloud provider passes :func:`render_bootstrap`'s output as the instance's
boot script (AWS user data, GCP ``startup-script``, Azure custom data). The
script:

1. exports ``PORT``, ``SKYCTL_SERVICE``, ``SKYCTL_REPLICA_ID``,
   ``SKYCTL_VERSION``, ``SKYCTL_NOTICE_FILE`` and the request's ``envs``
   (already merged with secrets), every value shell-quoted, then SkyPilot's
   task variables (``providers.replica_env``; ``SKYPILOT_NODE_IPS`` is the
   node's first address; for a multi-node replica ``node_script``, the
   cloud's own bash, sets the node's rank and every node's address);
2. creates and enters a work directory and appends all output to
   ``replica.log`` there (and to the boot log of the cloud);
3. starts ``notice_watch`` in the background: a cloud-specific bash snippet
   that polls the metadata server for an interruption notice and, when one
   comes, writes the epoch second of the announced kill to
   ``"$SKYCTL_NOTICE_FILE"`` (a server may watch that file to drain itself);
   with ``drain_on_notice`` (clouds whose API does not show the notice, such
   as Azure) it then sends SIGTERM to ``run``, so the readiness probe fails,
   the router drains the replica and the controller replaces it before the kill;
4. runs the spec's ``setup`` (a failure ends the script with its exit code),
   then ``exec``s the spec's ``run``.

``setup`` and ``run`` are the user's shell code and go in verbatim, inside
quoted here-documents (so nothing in them is expanded by this wrapper); all
other spec values are quoted with :func:`shlex.quote` and never interpolated.
The output is deterministic for a given request, so a retried launch sends
identical boot data.
"""

from __future__ import annotations

import hashlib
import re
import shlex

from providers.base import LaunchRequest
from providers.replica_env import NODE_IP_VARS, skypilot_env
from skyctl.errors import SpecError

__all__ = ["DEFAULT_WORK_ROOT", "render_bootstrap"]

DEFAULT_WORK_ROOT = "/opt/skyctl"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = ("PORT", "SKYCTL_SERVICE", "SKYCTL_REPLICA_ID", "SKYCTL_VERSION", "SKYCTL_NOTICE_FILE")


def _delimiter(kind: str, body: str) -> str:
    """A here-document delimiter that does not occur in ``body``."""
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:12]
    delim = f"SKYCTL_{kind}_{digest}"
    n = 0
    while delim in body:
        n += 1
        delim = f"SKYCTL_{kind}_{digest}_{n}"
    return delim


def _heredoc(path: str, kind: str, body: str) -> list[str]:
    if not body.endswith("\n"):
        body += "\n"
    delim = _delimiter(kind, body)
    return [f"cat > {shlex.quote(path)} <<'{delim}'", body + delim]


def render_bootstrap(
    request: LaunchRequest,
    *,
    notice_watch: str = "",
    work_root: str = DEFAULT_WORK_ROOT,
    drain_on_notice: bool = False,
    node_script: str = "",
) -> str:
    """The boot script for ``request`` (see the module docstring).

    Raises SpecError for an env name that is not a shell identifier.
    """
    for name in request.envs:
        if not _ENV_NAME.match(name):
            raise SpecError(
                f"not a valid environment variable name {name!r} "
                "(letters, digits and '_', not starting with a digit)",
                key=f"envs.{name}",
            )
    work = f"{work_root.rstrip('/')}/{request.service}-{request.replica_id}"
    ours = {
        "PORT": str(request.port),
        "SKYCTL_SERVICE": request.service,
        "SKYCTL_REPLICA_ID": str(request.replica_id),
        "SKYCTL_VERSION": str(request.version),
        "SKYCTL_NOTICE_FILE": f"{work}/notice",
    }
    lines = [
        "#!/bin/bash",
        "# skyctl replica bootstrap (generated)",
        "set -u",
    ]
    # user envs first, so ours win for the reserved names
    lines += [
        f"export {k}={shlex.quote(v)}"
        for k, v in sorted(request.envs.items())
        if k not in _RESERVED
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in ours.items()]
    lines += [  # SkyPilot's task variables; the node's address is known only here
        f"export {k}={shlex.quote(v)}" for k, v in skypilot_env(request, node_ip=None).items()
    ]
    first, *others = NODE_IP_VARS
    lines.append(
        f'export {first}="$(hostname -I 2>/dev/null | cut -d" " -f1)"; '
        f'[ -n "${first}" ] || export {first}=127.0.0.1'
    )
    lines += [f'export {var}="${first}"' for var in others]
    if request.spec.num_nodes > 1:  # the cloud's way to learn this node's rank and peers
        lines.append(node_script.strip())
    lines += [
        f"SKYCTL_WORK={shlex.quote(work)}",
        'mkdir -p "$SKYCTL_WORK" && cd "$SKYCTL_WORK" || exit 1',
        'exec > >(tee -a "$SKYCTL_WORK/replica.log") 2>&1',
        'echo "skyctl: replica $SKYCTL_REPLICA_ID of $SKYCTL_SERVICE (version $SKYCTL_VERSION)"',
    ]
    lines += _heredoc("setup.sh", "SETUP", request.spec.setup or "true")
    lines += _heredoc("run.sh", "RUN", request.spec.run or "echo 'skyctl: the spec has no run'")
    if notice_watch.strip():
        lines += _heredoc("notice_watch.sh", "NOTICE", notice_watch)
        if drain_on_notice:
            # the cloud tells only the VM: stop the server gracefully (SIGTERM to
            # run and its children) so the controller's probe fails, the router
            # drains the replica and its replacement starts before the kill
            lines += [
                "(bash notice_watch.sh </dev/null || exit 0",
                " echo 'skyctl: interruption notice; draining'",
                ' for p in $(pgrep -P $$); do [ "$p" = "$BASHPID" ] || '
                '[ "$(cat /proc/$p/comm 2>/dev/null)" = tee ] || kill -TERM "$p" 2>/dev/null; done',
                " kill -TERM $$) &",
            ]
        else:
            lines += ["bash notice_watch.sh </dev/null &"]
    lines += [
        "bash setup.sh",
        "rc=$?",
        'if [ "$rc" -ne 0 ]; then echo "skyctl: setup failed (exit $rc)"; exit "$rc"; fi',
        "exec bash run.sh",
    ]
    return "\n".join(lines) + "\n"
