"""Keeping a spec's ``secrets:`` values out of everything skyctl writes down.

A spec's ``secrets:`` reach the replica's environment and nothing else: the
controller stores the spec with every secret value replaced by a placeholder
(:func:`redact`, which keeps the YAML's structure and line numbers, so errors
about a stored spec still point at the right line) and the values themselves
encrypted (Fernet, from ``cryptography``) under a key in a file only the user
can read (``$SKYCTL_HOME/secret.key``, mode 0600, created on first use), or
given in ``$SKYCTL_SECRET_KEY`` (a Kubernetes Secret shared by several pods).

:meth:`Secrets.seal` turns a submitted spec into what is stored;
:meth:`Secrets.open` turns a stored version back into the spec with its
secrets. Every problem is one line: a spec that hides its secrets behind YAML
anchors or merge keys is a :class:`~skyctl.errors.SpecError` (the values could
not be redacted), a missing, unreadable, exposed or wrong key a
:class:`~skyctl.errors.ConfigError`. No message ever quotes a secret value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.fernet import Fernet, InvalidToken

from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_checks import stored_spec
from skyctl.spec_yaml import parse_spec

__all__ = [
    "KEY_ENV",
    "KEY_FILE_NAME",
    "Sealed",
    "Secrets",
    "api_keys_from_environment",
    "placeholder",
    "redact",
]

#: the key file's name in ``$SKYCTL_HOME``
KEY_FILE_NAME = "secret.key"
# the key itself, instead of the file: how processes in several pods (the
# controller and the router pods, docs/kubernetes.md) share one key
KEY_ENV = "SKYCTL_SECRET_KEY"


def api_keys_from_environment(
    spec: ServiceSpec, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The values of the variables ``service.auth.api_keys_env`` names, from the
    submitting command's environment (sealed with the secrets by the controller)."""
    env = os.environ if environ is None else environ
    auth = spec.service.auth
    if auth is None:
        return {}
    return {name: env[name] for name in auth.api_keys_env if env.get(name, "").strip()}


def placeholder(name: str) -> str:
    """The value a redacted spec shows for secret ``name``."""
    return f"<secret:{name}>"


# -- redaction -----------------------------------------------------------------


def redact(
    text: str,
    source: str | None = None,
    *,
    envs: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> str:
    """``text`` with each ``secrets:`` value replaced by ``"<secret:NAME>"``.

    Everything else (keys, comments, line numbers) is kept; a secret left
    blank (filled from the command line, ``envs``/``secrets`` here) and a
    managed reference stay as written. Raises SpecError for an invalid spec,
    or when a value cannot be redacted in place (it comes through a YAML alias
    or merge key).
    """
    spec = parse_spec(text, source, envs=envs, secrets=secrets)
    if not spec.secrets:
        return text
    spans = _secret_spans(text, source)
    out, last = [], 0
    for start, end, name in spans:
        out.append(text[last:start])
        out.append(_replacement(text[start:end], name, text[end:]))
        last = end
    out.append(text[last:])
    redacted = "".join(out)
    parse_spec(redacted, source, envs=envs, secrets=secrets)  # still a valid spec
    written = yaml.safe_load(redacted).get("secrets") or {}
    if isinstance(written, list):
        written = {}  # managed references only
    if not isinstance(written, dict) or any(
        value not in (None, placeholder(str(name))) for name, value in written.items()
    ):
        raise _refuse(source, "the values could not be redacted; write them as plain strings")
    return redacted


def _replacement(span: str, name: str, rest: str) -> str:
    """A quoted placeholder spanning as many lines as ``span``.

    When text follows the value on its last line (a flow mapping's ``, B: x}``),
    that line keeps its indentation.
    """
    lines = span.split("\n")
    if len(lines) == 1:
        return f'"{placeholder(name)}"'
    last = lines[-1]
    indent = last[: len(last) - len(last.lstrip(" \t"))] if rest.split("\n", 1)[0].strip() else ""
    return f'"{placeholder(name)}"' + "\n" * (len(lines) - 1) + indent


def _refuse(source: str | None, message: str, line: int | None = None) -> SpecError:
    return SpecError(message, key="secrets", line=line, source=source)


def _secret_spans(text: str, source: str | None) -> list[tuple[int, int, str]]:
    """(start, end, name) of every secret value's text, in order (not blank ones)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)  # parse_spec accepted it
    section = None
    for key, value in root.value:
        if key.tag == "tag:yaml.org,2002:merge":
            raise _refuse(source, "not allowed with a merge key (<<) at the top level")
        if isinstance(key, yaml.ScalarNode) and key.value == "secrets":
            section = value
    if section is None or isinstance(section, yaml.SequenceNode):
        return []  # every secret comes from the command line (managed references aside)
    if not isinstance(section, yaml.MappingNode):
        raise _refuse(source, "write the secrets mapping in place, not through an alias")
    merges = [k for k, _ in section.value if k.tag == "tag:yaml.org,2002:merge"]
    if merges:
        raise _refuse(source, "no merge keys (<<) inside secrets", _line(section))
    counts: dict[int, int] = {}
    _count_nodes(root, counts, set())
    spans = []
    for key, value in section.value:
        name = str(key.value)
        if value.tag == "tag:yaml.org,2002:null":
            continue  # nothing written to hide: filled from the command line, or managed
        if counts[id(value)] > 1 or counts[id(section)] > 1:
            raise SpecError(
                "a secret value must be written in place, not shared through an anchor",
                key=f"secrets.{name}",
                line=_line(value),
                source=source,
            )
        assert isinstance(value, yaml.ScalarNode)  # parse_spec accepted it
        spans.append((value.start_mark.index, value.end_mark.index, name))
    return sorted(spans)


def _count_nodes(node: yaml.Node, counts: dict[int, int], seen: set[int]) -> None:
    """How many times each node is reached (an alias reaches its anchor's node again)."""
    counts[id(node)] = counts.get(id(node), 0) + 1
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _count_nodes(key, counts, seen)
            _count_nodes(value, counts, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _count_nodes(item, counts, seen)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


# -- sealing and opening -------------------------------------------------------


def _strings(values: object) -> dict[str, str]:
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise ConfigError("the stored secrets are corrupt: submit the service again")
    return values


@dataclass(frozen=True)
class Sealed:
    """A submitted spec as the controller stores it."""

    yaml_text: str  # the spec with its secret values redacted
    ciphertext: str | None  # the secret values, encrypted; None when there are none
    spec: ServiceSpec  # the parsed spec (real secret values, redacted yaml_text)


class Secrets:
    """Encrypts secret values with the key in ``key_file`` (created 0600 on first use)."""

    def __init__(self, key_file: str | os.PathLike[str]) -> None:
        self.key_file = Path(key_file)
        self._fernet: Fernet | None = None

    def seal(
        self,
        yaml_text: str,
        source: str | None = None,
        *,
        envs: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        api_keys: Mapping[str, str] | None = None,
    ) -> Sealed:
        """Parse a submitted spec; redact and encrypt its secrets (SpecError if invalid).

        ``envs``/``secrets`` are the command line's overrides (``--env``,
        ``--secret``): they are sealed with the secrets (an ``--env`` often
        carries a token), so a restarted controller opens the same spec.
        """
        spec = parse_spec(yaml_text, source, envs=envs, secrets=secrets)
        named = set(spec.service.auth.api_keys_env) if spec.service.auth is not None else set()
        keys = {k: v for k, v in (api_keys or {}).items() if k in named and v.strip()}
        if not spec.secrets and not envs and not keys:
            return Sealed(yaml_text, None, spec)
        redacted = redact(yaml_text, source, envs=envs, secrets=secrets)
        if envs or keys:
            payload: dict[str, object] = {"v": 2, "envs": dict(envs or {}), "secrets": spec.secrets}
            if keys:
                payload["api_keys"] = keys
            ciphertext = self._encrypt_json(payload)
        else:
            ciphertext = self.encrypt(spec.secrets)
        sealed = dataclasses.replace(spec, yaml_text=redacted, api_keys=keys)
        return Sealed(redacted, ciphertext, sealed)

    def open(self, yaml_text: str, source: str | None, ciphertext: str | None) -> ServiceSpec:
        """The stored spec with its secret values (and command-line envs) put back.
        Its unknown keys are ignored (:func:`~skyctl.spec_checks.stored_spec`): an
        earlier skyctl, whose checks were looser, accepted it."""
        if ciphertext is None:
            with stored_spec():
                return parse_spec(yaml_text, source)
        envs, values, keys = self._unseal(ciphertext)
        with stored_spec():
            spec = parse_spec(yaml_text, source, envs=envs, secrets=values)
        if keys:
            spec = dataclasses.replace(spec, api_keys=keys)
        missing = [name for name, value in spec.secrets.items() if value == placeholder(name)]
        if missing:
            raise ConfigError(
                f"{source or 'a stored spec'}: the stored secrets ({', '.join(sorted(values))}) "
                f"do not match the spec's ({', '.join(sorted(spec.secrets))}); "
                "submit the service again"
            )
        return spec

    def encrypt(self, values: Mapping[str, str]) -> str:
        return self._encrypt_json(dict(values))

    def _encrypt_json(self, payload: object) -> str:
        plain = json.dumps(payload, sort_keys=True).encode("utf-8")
        return self._key(create=True).encrypt(plain).decode("ascii")

    def decrypt(self, ciphertext: str) -> dict[str, str]:
        """Secret values sealed by :meth:`encrypt`."""
        return _strings(self._decrypt_json(ciphertext))

    def _unseal(self, ciphertext: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """(envs, secrets, api keys) sealed by :meth:`seal` (envs and keys empty in the
        older form)."""
        payload = self._decrypt_json(ciphertext)
        if isinstance(payload, dict) and payload.get("v") == 2:
            keys = _strings(payload.get("api_keys") or {})
            return _strings(payload.get("envs")), _strings(payload.get("secrets")), keys
        return {}, _strings(payload), {}

    def _decrypt_json(self, ciphertext: str) -> object:
        fernet = self._key(create=False)
        try:
            plain = fernet.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise ConfigError(
                f"secret key {self.key_file} does not decrypt the stored secrets "
                "(was the file replaced?): restore it, or submit the service again"
            ) from None
        try:
            return json.loads(plain)
        except ValueError:
            return None

    # -- the key file ----------------------------------------------------------

    def _key(self, *, create: bool) -> Fernet:
        if self._fernet is None and os.environ.get(KEY_ENV):  # e.g. a Kubernetes Secret
            try:
                self._fernet = Fernet(os.environ[KEY_ENV].strip())
            except ValueError:
                raise ConfigError(
                    f"${KEY_ENV} is not a valid key (expected 44 url-safe base64 characters)"
                ) from None
        if self._fernet is None:
            if create and not self.key_file.exists():
                self._create_key()
            self._fernet = self._read_key()
        return self._fernet

    def _read_key(self) -> Fernet:
        path = self.key_file
        try:
            with open(path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                raw = f.read(4096)
        except FileNotFoundError:
            raise ConfigError(
                f"secret key {path} is missing, so stored secrets cannot be decrypted: "
                "restore it, or submit the service again"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot read secret key {path}: {e.strerror or e}") from None
        if stat.S_IMODE(mode) & 0o077:
            raise ConfigError(
                f"secret key {path} is readable by other users "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
            )
        try:
            return Fernet(raw.strip())
        except ValueError:
            raise ConfigError(
                f"secret key {path} is not a valid key (expected 44 url-safe base64 characters)"
            ) from None

    def _create_key(self) -> None:
        """Write a new key atomically (mode 0600); a key another process wrote first wins."""
        path = self.key_file
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".secret-key-", dir=path.parent)
        except OSError as e:
            raise ConfigError(f"cannot create secret key {path}: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp made it 0600
                f.write(Fernet.generate_key() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        except OSError as e:
            raise ConfigError(f"cannot create secret key {path}: {e.strerror or e}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
