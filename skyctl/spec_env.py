"""A spec's ``envs`` and ``secrets``: command-line overrides, then substitution.

SkyServe's semantics (``sky/task.py`` and ``sky/client/cli`` in SkyPilot):

- ``--env KEY=VALUE`` / ``--secret KEY=VALUE`` set a value; ``--env KEY`` alone
  takes ``$KEY`` from the local environment (an error when it is not set).
  ``--env-file FILE`` (dotenv) loads into the envs *and* the secrets, below
  ``--env`` for the envs and below ``--secret-file`` and ``--secret`` for the
  secrets. The result overrides (and adds to) the spec's ``envs:``/``secrets:``.
- After the overrides, a variable still without a value is an error naming the
  key and the flag that fills it (:func:`fill_hint`).
- Then ``$NAME`` and ``${NAME}`` are replaced, with the envs and the secrets
  (secrets win), in the keys and string values of ``service:``,
  ``file_mounts:``, ``workdir:`` and ``volumes:``; a name that is not a variable
  stays as written. Nowhere else: ``run``/``setup`` see them as environment
  variables.

:func:`apply_overrides` and :func:`substitute` work on the line-numbered YAML of
``skyctl.spec_checks`` before the parser reads it, so errors keep their lines.
:func:`parse_assignment` and :func:`merge_overrides` are the CLI's side.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from skyctl.spec_checks import LineDict, LineList, Section, spec_error, type_name

__all__ = [
    "ENV_NAME_RE",
    "MANAGED_PREFIX",
    "SUBSTITUTED_KEYS",
    "apply_overrides",
    "env_map",
    "fill_hint",
    "merge_overrides",
    "parse_assignment",
    "read_secrets",
    "substitute",
    "unresolved_references",
]

ENV_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Linux's MAX_ARG_STRLEN: execve fails (E2BIG) on a NAME=VALUE this long, with its NUL
MAX_ENV_BYTES = 128 << 10
#: where SkyServe fills in envs and secrets (sky/task.py, Task.from_yaml_config)
SUBSTITUTED_KEYS: tuple[str, ...] = ("file_mounts", "service", "workdir", "volumes")
#: a managed secret reference: ``secrets: [secrets:HF_TOKEN]`` or ``{secrets:HF_TOKEN: null}``
MANAGED_PREFIX = "secrets:"
# SkyPilot's pattern (sky/task.py _fill_in_env_vars): $NAME or ${NAME}
_VAR_RE = re.compile(r"\$\{?\b([a-zA-Z_][a-zA-Z0-9_]*)\b\}?")


# -- the command line ----------------------------------------------------------


def parse_assignment(
    text: str, flag: str, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """``KEY=VALUE`` -> (KEY, VALUE); ``KEY`` alone -> (KEY, $KEY of ``environ``).

    Raises ValueError with a one-line message naming ``flag``.
    """
    environ = os.environ if environ is None else environ
    key, eq, value = text.partition("=")
    if not ENV_NAME_RE.fullmatch(key):
        raise ValueError(
            f"{flag} {text.splitlines()[0] if text else text!r}: {key!r} is not a variable name "
            "(letters, digits and '_', not starting with a digit); expected KEY=VALUE or KEY"
        )
    if eq:
        return key, value
    if key not in environ:
        raise ValueError(
            f"{flag} {key}: {key} is not set in the local environment; "
            f"export it, or pass {flag} {key}=VALUE"
        )
    return key, environ[key]


def merge_overrides(
    files: Iterable[Mapping[str, str | None] | None], pairs: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """Later files beat earlier ones; the flags' pairs beat every file (as SkyPilot).

    A dotenv line without ``=`` (value None) is skipped.
    """
    out: dict[str, str] = {}
    for values in files:
        for key, value in (values or {}).items():
            if value is not None:
                out[key] = value
    out.update(pairs)
    return out


# -- the spec ------------------------------------------------------------------


def apply_overrides(top: LineDict, key: str, values: Mapping[str, str] | None) -> None:
    """Put ``values`` into the spec's ``envs``/``secrets`` mapping (in place).

    An override keeps the line of the key it replaces; a new key gets the
    line of the section (or of the document). A list of managed secret
    references becomes a mapping first, as SkyPilot does.
    """
    if not values:
        return
    section = top.get(key)
    if isinstance(section, LineList):  # managed references: [secrets:NAME, ...]
        as_map = LineDict()
        as_map.line = section.line
        as_map.key_lines, as_map.value_lines = {}, {}
        for item, line in zip(section, section.item_lines, strict=True):
            as_map[item] = None
            as_map.key_lines[item] = as_map.value_lines[item] = line
        section = as_map
    elif section is None:
        section = LineDict()
        section.line = top.key_lines.get(key, top.line)
        section.key_lines, section.value_lines = {}, {}
        top.key_lines.setdefault(key, top.line)
        top.value_lines.setdefault(key, top.line)
    if not isinstance(section, LineDict):
        return  # the parser reports the wrong type
    for name, value in values.items():
        section.key_lines.setdefault(name, section.line)
        section.value_lines.setdefault(name, section.key_lines[name])
        section[name] = value
    top[key] = section


def unresolved_references(managed: Iterable[str], secrets: Mapping[str, str]) -> list[str]:
    """Names of managed secret references (``secrets:[scope.]NAME``) with no value given.

    skyctl has no secret store: such a name reaches replicas only when
    ``--secret NAME`` (or an inline ``NAME: value``) gives it.
    """
    out = []
    for ref in managed:
        name = ref.removeprefix(MANAGED_PREFIX)
        for scope in ("personal.", "workspace.", "global."):
            name = name.removeprefix(scope)
        if name not in secrets:
            out.append(name)
    return out


def fill_hint(kind: str, name: str) -> str:
    """What to pass when ``envs``/``secrets`` entry ``name`` has no value."""
    flag = "--env" if kind == "envs" else "--secret"
    return (
        f"no value given: pass {flag} {name}=VALUE (or {flag} {name} to take ${name} from "
        f'your shell), or write {name}: "" for an empty value'
    )


def substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` with ``$NAME``/``${NAME}`` replaced in every key and string.

    Line numbers are kept; names not in ``variables`` stay as written.
    """
    if not variables:
        return value

    def one(text: str) -> str:
        return _VAR_RE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)

    if isinstance(value, str):
        return one(value)
    if isinstance(value, LineDict):
        out = LineDict()
        out.line = value.line
        out.key_lines, out.value_lines = {}, {}
        for key, item in value.items():
            new_key = one(key) if isinstance(key, str) else key
            out[new_key] = substitute(item, variables)
            out.key_lines[new_key] = value.key_lines.get(key, value.line)
            out.value_lines[new_key] = value.value_lines.get(key, value.line)
        return out
    if isinstance(value, LineList):
        items = LineList(substitute(item, variables) for item in value)
        items.line, items.item_lines = value.line, list(value.item_lines)
        return items
    return value


# -- reading the sections (for skyctl.spec_yaml) -----------------------------------


def env_map(top: Section, key: str, managed: list[str] | None = None) -> dict[str, str]:
    sec = top.mapping(key, null_ok=True)
    out: dict[str, str] = {}
    if sec is None:
        return out
    for name, value in sec.data.items():
        if name is None or isinstance(name, bool):  # `ON: 1` was variable "True"
            kind = "null (~, null)" if name is None else "a boolean (yes, no, on, off, ...)"
            raise spec_error(
                f"YAML reads this unquoted name as {kind}, not text: quote it",
                key=sec.sub(str(name)),
                line=sec.key_line(name),
                source=sec.source,
            )
        label = str(name)  # as SkyServe: `1: x` is variable "1" (then rejected by name)
        if managed is not None and label.startswith(MANAGED_PREFIX):
            if value is not None:
                raise sec.error(
                    name,
                    f"a managed secret reference ({MANAGED_PREFIX}NAME) takes null, not a value; "
                    f"to give the value here, write {label[len(MANAGED_PREFIX) :]!r} without "
                    "the prefix",
                )
            managed.append(label)
            continue
        if not ENV_NAME_RE.fullmatch(label):
            raise sec.error(name, f"invalid variable name {label!r}", at_key=True)
        if value is None:
            raise sec.error(name, fill_hint(key, label))
        if isinstance(value, bool | int | float):
            value = str(value)
        if not isinstance(value, str):
            raise sec.error(name, f"expected a string, got {type_name(value)}")
        if "\x00" in value:  # from --env-file or the API (YAML's are refused at load)
            raise sec.error(name, "a NUL character cannot be in an environment variable")
        size = len(f"{label}={value}".encode())
        if size >= MAX_ENV_BYTES:  # from --env or --env-file (a spec is smaller)
            raise sec.error(
                name,
                f"{label}=VALUE is {size} bytes: Linux starts no process with a variable of "
                f"{MAX_ENV_BYTES} bytes or more (put large values in a file)",
            )
        out[label] = value
    return out


def read_secrets(top: Section, extra: dict[str, Any]) -> dict[str, str]:
    """The inline secrets; managed references (SkyServe's secret store) go to ``extra``."""
    managed: list[str] = []
    if isinstance(top.raw("secrets"), list):
        for item, path, line in top.items("secrets") or []:
            if not isinstance(item, str) or not item.startswith(MANAGED_PREFIX):
                raise top.at(
                    path,
                    line,
                    f"expected a managed secret reference such as '{MANAGED_PREFIX}HF_TOKEN', "
                    f"got {item!r} (inline secrets are a mapping: {{NAME: value}})",
                )
            managed.append(item)
        values: dict[str, str] = {}
    else:
        values = env_map(top, "secrets", managed)
    if managed:
        extra["secrets"] = managed
    return values
