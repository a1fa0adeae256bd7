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

KeyPath = tuple[str | int, ...]  # a key's place: section, keys, list indexes

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
# every section's keys and what each allows: skyctl/config_schema.py


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
    """Read ``config.yaml`` and check every section and key of it
    (:mod:`skyctl.config_schema`); missing file -> empty config. The first problem is a
    one-line ConfigError naming the file, the line, the dotted key and what is allowed."""
    config, problems = read_user_config(p)
    if problems:
        raise ConfigError(next(iter(problems.values())))
    return config


def read_user_config(p: Paths) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``config.yaml`` as written, and each section's first problem (section -> one
    line), for a command that reports each cloud on its own (``skyctl check``, a
    teardown asking every cloud it can). A file that is no YAML, no mapping, or has an
    unknown section, a section that is no mapping, or a key given twice, raises."""
    if not p.config.exists():
        return {}, {}
    import yaml  # not for a home without config.yaml (most commands, most homes)

    from skyctl.config_schema import Bad, check_section, dotted

    text = p.config.read_text()
    try:
        data = yaml.safe_load(text) or {}
        lines = _lines(yaml.compose(text), ())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p.config}{line}: not valid YAML") from None
    except _Twice as e:
        raise ConfigError(f"{p.config}:{e.line}: {dotted(e.path)}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p.config}: expected a mapping of sections {CLOUD_SECTIONS}")
    problems: dict[str, str] = {}
    for key, value in data.items():
        where = f"{p.config}:{lines.get((str(key),), 1)}"
        if key not in CLOUD_SECTIONS:
            close = difflib.get_close_matches(str(key), CLOUD_SECTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown section {key!r}{hint}; allowed: {', '.join(CLOUD_SECTIONS)}"
            )
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: section {key!r} must be a mapping")
        try:
            check_section(key, value)
        except Bad as e:
            problems[key] = f"{p.config}:{_line_of(lines, e.path)}: {dotted(e.path)}: {e.message}"
    return {k: dict(v or {}) for k, v in data.items()}, problems


def router_workers(p: Paths) -> int:
    """``router.workers`` of ``config.yaml``: how many router processes share each
    endpoint's port (SO_REUSEPORT); 1 when unset. One-line error when invalid."""
    return int(load_user_config(p).get("router", {}).get("workers", 1))


class _Twice(Exception):
    def __init__(self, path: KeyPath, line: int, first: int) -> None:
        super().__init__(f"given twice (first on line {first}); give it once")
        self.path, self.line = path, line


def _lines(node: Any, path: KeyPath, seen: set[int] | None = None) -> dict[KeyPath, int]:
    """Every key and list item under ``node`` (a composed YAML node) -> its 1-based
    line, for error messages; a key given twice in one mapping raises ``_Twice``.
    A node met again (a YAML alias) is not walked again: nested aliases ("a billion
    laughs") would make the walk exponential, where the parse itself shares them."""
    import yaml

    seen = set() if seen is None else seen
    out: dict[KeyPath, int] = {}
    if id(node) in seen:
        return out
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            here = (*path, str(k.value))
            if here in out:
                raise _Twice(here, k.start_mark.line + 1, out[here])
            out[here] = k.start_mark.line + 1
            out.update(_lines(v, here, seen))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            out.update(_lines(item, (*path, i), seen))
    return out


def _line_of(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of ``path``, or of the nearest enclosing key the file has."""
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


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
