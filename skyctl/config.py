"""Where skyctl keeps its files, and the user's configuration.

``SKYCTL_HOME`` (default ``~/.skyctl``) holds the state database, the API
token, the daemon's pid/port file and log, the local provider's replicas, and
``config.yaml``: one section per cloud (``aws:``, ``gcp:``, ``azure:``,
``kubernetes:``), see ``docs/clouds.md``.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyctl.errors import ConfigError, SkyctlError
from skyctl.logtail import log_limits_problem

# the clouds' sections and the router process's (router.workers)
CLOUD_SECTIONS = (
    "local",
    "aws",
    "gcp",
    "azure",
    "kubernetes",
    "simulated",
    "router",
)
# the keys of the sections no provider checks itself (the clouds' providers refuse their
# own unknown keys when built); a key nothing reads is refused, not silently ignored
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "local": ("accelerators", "log_max_mb", "log_backups"),
    "router": ("workers",),
}
MAX_ROUTER_WORKERS = 64


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def db(self) -> Path:
        return Path(os.environ.get("SKYCTL_DB", self.home / "state.db"))

    @property
    def token(self) -> Path:
        return self.home / "api-token"

    @property
    def daemon_info(self) -> Path:
        return self.home / "controller.json"

    @property
    def daemon_log(self) -> Path:
        return self.home / "controller.log"

    @property
    def local_state(self) -> Path:
        return self.home / "local"

    @property
    def config(self) -> Path:
        return self.home / "config.yaml"


def paths(home: str | os.PathLike[str] | None = None) -> Paths:
    """The file layout under ``home``, ``$SKYCTL_HOME`` or ``~/.skyctl``; created 0700."""
    given = home or os.environ.get("SKYCTL_HOME")
    root = Path(given or Path.home() / ".skyctl").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:  # one line naming the setting (it was "error: File exists: /dev/null")
        why = "it is a file" if isinstance(e, FileExistsError) else e.strerror or str(e)
        source = "--home or $SKYCTL_HOME" if given else "the default"
        raise SkyctlError(
            f"state directory {root} ({source}): cannot create it: {why}; "
            "set SKYCTL_HOME (or --home) to a directory you can write"
        ) from None
    return Paths(root.resolve())


def load_user_config(p: Paths) -> dict[str, dict[str, Any]]:
    """Read ``config.yaml``; missing file -> empty config. One-line errors."""
    if not p.config.exists():
        return {}
    import yaml  # not for a home without config.yaml (most commands, most homes)

    try:
        data = yaml.safe_load(p.config.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p.config}{line}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p.config}: expected a mapping of sections {CLOUD_SECTIONS}")
    lines = _key_lines(p.config.read_text())
    for key, value in data.items():
        where = f"{p.config}:{lines.get(str(key), 1)}"
        if key not in CLOUD_SECTIONS:
            close = difflib.get_close_matches(str(key), CLOUD_SECTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown section {key!r}{hint}; allowed: {', '.join(CLOUD_SECTIONS)}"
            )
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: section {key!r} must be a mapping")
        allowed = SECTION_KEYS.get(key)
        unknown = sorted(str(k) for k in value or {} if k not in (allowed or (k,)))
        if unknown:
            at = _key_lines(p.config.read_text(), key).get(unknown[0], 1)
            close = difflib.get_close_matches(unknown[0], allowed or (), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{p.config}:{at}: {key}.{unknown[0]}: unknown key{hint}; "
                f"allowed: {', '.join(allowed or ())}"
            )
        bad = log_limits_problem(value or {}) if key == "local" else None
        if bad:  # the replica logs' cap (providers/local_logs.py)
            at = _key_lines(p.config.read_text(), key).get(bad[0], 1)
            raise ConfigError(f"{p.config}:{at}: {bad[1]}")
    return {k: dict(v or {}) for k, v in data.items()}


def router_workers(p: Paths) -> int:
    """``router.workers`` of ``config.yaml``: how many router processes share each
    endpoint's port (SO_REUSEPORT); 1 when unset. One-line error when invalid."""
    workers = load_user_config(p).get("router", {}).get("workers", 1)
    if (
        isinstance(workers, bool)
        or not isinstance(workers, int)
        or not (1 <= workers <= MAX_ROUTER_WORKERS)
    ):
        line = _key_lines(p.config.read_text(), "router").get("workers", 1)
        raise ConfigError(
            f"{p.config}:{line}: router.workers: expected an integer from 1 to "
            f"{MAX_ROUTER_WORKERS}, got {workers!r}"
        )
    return workers


def _key_lines(text: str, under: str | None = None) -> dict[str, int]:
    """Top-level key (or the keys of the mapping at top-level key ``under``) -> its
    1-based line, for error messages."""
    import yaml

    node = yaml.compose(text)
    if under is not None and isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if k.value == under), None)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


TOKEN_ENV = "SKYCTL_API_TOKEN"  # the token itself (pods sharing a Kubernetes Secret)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by the user only (the
    controller's, supervisor's and router processes' ``.json`` files, the route cache)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:  # a full disk: no half-written .tmp left behind, and say which file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


def read_or_create_token(p: Paths) -> str:
    """The controller API token: ``$SKYCTL_API_TOKEN`` if set, else the token file,
    created with mode 0600 on first use."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    if p.token.exists():
        token = p.token.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    write_private(p.token, token + "\n")  # a full disk leaves no empty token file
    return token
