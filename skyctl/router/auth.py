"""API keys on the service endpoint (``service.auth``): who may send requests.

Clients send ``Authorization: Bearer KEY``. The keys come from the spec's
``secrets:`` (named in ``service.auth.api_key_secrets``, stored encrypted by
:mod:`skyctl.secrets`) and from the controller's environment (named in
``api_keys_env``); the spec itself holds only their names.

:class:`ApiKeys` keeps no key, only the SHA-256 digest of each, and checks a
token against every digest with :func:`hmac.compare_digest`, without
stopping at the first match: the time taken says nothing about which key
matched or how much of one did, nor (digests being of equal length) about the
keys' lengths. Key values are never logged; :attr:`ApiKeys.problems` names
the secrets or variables that gave no key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from skyctl.spec import Auth

_BEARER = b"bearer "
CHALLENGE = b'WWW-Authenticate: Bearer realm="skyctl"\r\n'
CHALLENGE_INVALID = b'WWW-Authenticate: Bearer realm="skyctl", error="invalid_token"\r\n'


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


#: where a router's ``secrets`` carry the ``api_keys_env`` values sealed at submission
SEALED_ENV = "env:"


class ApiKeys:
    """The accepted keys of one service, as digests (see the module docstring)."""

    __slots__ = ("_digests", "forward", "problems")

    def __init__(self, keys: list[str], *, forward: bool = False) -> None:
        self._digests = tuple(_digest(k.encode("utf-8")) for k in dict.fromkeys(keys) if k)
        self.forward = forward  # pass the Authorization header on to replicas
        self.problems: list[str] = []

    @classmethod
    def from_spec(
        cls,
        auth: Auth,
        secrets: Mapping[str, str],
        environ: Mapping[str, str] | None = None,
    ) -> ApiKeys:
        """The keys ``auth`` names, from ``secrets`` and ``environ`` (default: os.environ)."""
        env = os.environ if environ is None else environ
        keys: list[str] = []
        problems: list[str] = []
        # a variable's value sealed at `serve up` first, else the controller's own
        sealed_or_env = {
            name: secrets.get(SEALED_ENV + name, "").strip() or env.get(name, "")
            for name in auth.api_keys_env
        }
        sources = (
            (auth.api_key_secrets, secrets, "secret {} is missing or empty"),
            (auth.api_keys_env, sealed_or_env, "environment variable {} is unset or empty"),
        )
        for names, values, missing in sources:
            for name in names:
                value = values.get(name, "").strip()
                if value:
                    keys.append(value)
                else:
                    problems.append(missing.format(name))
        api_keys = cls(keys, forward=auth.forward_authorization)
        api_keys.problems = problems
        return api_keys

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the keys
        return f"ApiKeys({len(self._digests)} keys, forward={self.forward})"

    def check(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the keys."""
        if not authorization or authorization[:7].lower() != _BEARER:
            return False
        token = authorization[7:].strip()
        if not token:
            return False
        digest = _digest(token)
        ok = False
        for known in self._digests:  # every key compared: no early exit
            ok |= hmac.compare_digest(digest, known)
        return ok
