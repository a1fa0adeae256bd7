"""One exception tree for the whole project.

::

    SkyctlError
    ├── SpecError                 a service spec is invalid (key path + YAML line)
    ├── ConfigError               user configuration or credentials are missing/wrong
    ├── StoreError                the state database cannot be used
    │   └── SchemaVersionError    the database was written by a newer skyctl
    ├── ServiceError              a request about a service cannot be honoured
    │   ├── ServiceExists
    │   └── ServiceNotFound
    ├── InvalidTransition         a replica life-cycle transition that is not allowed
    └── ProviderError             raised by providers, already translated from the SDK
        ├── CapacityError         no capacity for this offering now (placement moves on)
        ├── QuotaError            the account's quota forbids the launch
        ├── NotFoundError         the instance does not exist (terminate treats as done)
        └── TransientError        throttling, 5xx, timeouts: worth retrying later

Every error renders as a single line: the CLI prints ``str(error)`` and exits 2
(bad input) or 1 (anything else), never a traceback.
"""

from __future__ import annotations


class SkyctlError(Exception):
    """Base of every error skyctl raises on purpose."""

    exit_code = 1


class SpecError(SkyctlError):
    """A service spec is invalid.

    ``key`` is the dotted key path (``service.replica_policy.min_replicas``),
    ``line`` the 1-based YAML line, ``source`` the file name when known.
    """

    exit_code = 2

    def __init__(
        self, message: str, *, key: str = "", line: int | None = None, source: str | None = None
    ) -> None:
        self.message = message
        self.key = key
        self.line = line
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source or "<spec>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        if self.key:
            return f"{where}: {self.key}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(SkyctlError):
    """User configuration or credentials are missing or wrong."""

    exit_code = 2


class StoreError(SkyctlError):
    """The state database cannot be opened or used."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this skyctl understands."""


class ServiceError(SkyctlError):
    """A request about a service cannot be honoured."""

    exit_code = 2


class ServiceExists(ServiceError):
    pass


class ServiceNotFound(ServiceError):
    pass


class InvalidTransition(SkyctlError):
    """A replica life-cycle transition outside ``skyctl.lifecycle.TRANSITIONS``."""


class ProviderError(SkyctlError):
    """An error from a provider, translated at its boundary.

    ``location`` names the offering's location (``cloud/region/zone``) when
    the error is about one, so placement can mark it.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        super().__init__(message)


class CapacityError(ProviderError):
    """No capacity for this offering right now (spot pool empty, zone exhausted)."""


class QuotaError(ProviderError):
    """The account's quota or limits forbid the launch."""


class NotFoundError(ProviderError):
    """The instance (or resource) does not exist."""


class TransientError(ProviderError):
    """Throttling, a 5xx, a timeout: the same call may succeed later."""
