"""The CLI's side of the controller API: find or start the daemon, call it.

Plain ``urllib`` (the CLI is synchronous; only the controller runs an event
loop). The controller is started on demand under the supervisor
(:mod:`skyctl.supervisor`, which also runs the router process), in its own
session with its output in ``controller.log``; both exit by themselves once
the last service is down. A supervisor whose controller was stopped
(``skyctl controller stop``) is asked to start it again (SIGUSR1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from skyctl.config import Paths, load_user_config, read_or_create_token
from skyctl.errors import ServiceError, ServiceNotFound, SkyctlError
from skyctl.supervisor_files import running_pid

if TYPE_CHECKING:
    import urllib.request  # imported by the first request (ControllerClient._request)

    from skyctl.store import Store

START_TIMEOUT = 30.0
T = TypeVar("T")


class ControllerUnreachable(SkyctlError):
    """The controller did not answer: not running, or it exited meanwhile."""


class ControllerRefused(ControllerUnreachable):
    """Nothing listens where the controller was (it exited): the request was not sent,
    so it can be sent again to the controller that answers now."""


def service_path(name: str, *rest: str) -> str:
    """``/v1/services/<name>[/rest...]`` with the name percent-encoded: a name is
    data, never part of the URL's syntax (``good?x`` must not address ``good``)."""
    parts = [urllib.parse.quote(name, safe=""), *rest]
    return "/v1/services/" + "/".join(parts)


def services_query(name: str | None = None) -> str:
    """``/v1/services``, or ``/v1/services?name=<name>`` with the name encoded."""
    if name is None:
        return "/v1/services"
    return "/v1/services?" + urllib.parse.urlencode({"name": name})


def watched_service(client: ControllerClient, name: str, waiting: str) -> dict[str, Any]:
    """The service a command waits on (``serve up``, ``serve update``); taken down
    meanwhile (by another ``serve down``), a one-line error saying so, exit 1, not the
    "no service named" of a name never given (exit 2)."""
    try:
        return dict(client.call("GET", services_query(name))[0])
    except ServiceNotFound:
        raise SkyctlError(
            f"service {name} was taken down while {waiting} (another `skyctl serve down`)"
        ) from None


class ServiceWatch:
    """What ``serve up`` and ``serve update`` poll while they wait: the service, through
    the controller that answers now. A controller that went away meanwhile (killed,
    crashed) is found again (its supervisor's warm spare, or one started now, as ``serve
    status`` does, while the store holds the service), at most ``REATTACH_TIMES`` times,
    and the wait goes on: the roll-out or start goes on in the controller too."""

    REATTACH_TIMES = 3

    def __init__(
        self, client: ControllerClient, name: str, waiting: str, note: Callable[[str], None]
    ) -> None:
        self.client, self.name, self.waiting, self.note = client, name, waiting, note
        self.reattached = 0

    def get(self) -> dict[str, Any]:
        while True:
            try:
                return watched_service(self.client, self.name, self.waiting)
            except ControllerUnreachable as gone:
                self._reattach(gone)

    def _reattach(self, gone: ControllerUnreachable) -> None:
        p = self.paths
        self.reattached += 1
        if self.reattached > self.REATTACH_TIMES:
            raise SkyctlError(
                f"{gone}: it went away {self.REATTACH_TIMES} times while {self.waiting}; "
                f"see {p.daemon_log} and `skyctl serve status {self.name}`"
            ) from None
        if self.name not in stored_services(p):
            raise SkyctlError(
                f"service {self.name} was taken down while {self.waiting} "
                "(another `skyctl serve down`)"
            ) from None
        self.note(
            f"The controller went away while {self.waiting}; waiting for it again "
            f"(see {p.daemon_log})"
        )
        self.client = ControllerClient.ensure(p)

    @property
    def paths(self) -> Paths:
        return self.client.paths


def _live_controller_pid(p: Paths) -> int | None:
    """The pid ``controller.json`` names when that process still runs (it may not answer)."""
    try:
        pid = int(json.loads(p.daemon_info.read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid


def _start_supervisor(p: Paths) -> subprocess.Popen[bytes] | None:
    """Start the supervisor (controller + router process), or wake the running one
    whose controller was stopped (then None: there is no new process to watch)."""
    pid = running_pid(p)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGUSR1)  # start the controller again
            return None
        except ProcessLookupError:
            pass  # it just exited: start a new one
    with open(p.daemon_log, "ab") as log:
        os.chmod(p.daemon_log, 0o600)
        return subprocess.Popen(
            [sys.executable, "-m", "skyctl.supervisor", "--home", str(p.home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


class ControllerClient:
    def __init__(self, p: Paths, host: str, port: int) -> None:
        self.paths = p
        self.base = f"http://{host}:{port}"
        self.token = read_or_create_token(p)

    # -------------------------------------------------------------- discovery
    @classmethod
    def find(cls, p: Paths) -> ControllerClient | None:
        """The running controller for this home, or None."""
        try:
            info = json.loads(p.daemon_info.read_text())
            os.kill(int(info["pid"]), 0)
            host, port = str(info["host"]), int(info["port"])
        except (OSError, ValueError, KeyError, TypeError):  # none, or corrupt
            return None
        client = cls(p, host, port)
        try:
            client.call("GET", "/v1/health", timeout=5)
        except SkyctlError:
            return None
        return client

    @classmethod
    def ensure(cls, p: Paths, progress: Callable[[str], None] | None = None) -> ControllerClient:
        """The running controller, starting one if needed."""
        client = cls.find(p)
        if client is not None:
            return client
        stored_services(p)  # a corrupt or newer-schema database: its one-line error, now
        load_user_config(p)  # a config.yaml the controller would refuse: its line, now (not
        # a supervisor restarting a controller that exits at once, and a 30 s wait)
        if progress:
            hung = _live_controller_pid(p)
            progress(
                f"the controller (pid {hung}) is not answering; waiting for it"
                if hung is not None
                else "starting the skyctl controller"
            )
        read_or_create_token(p)
        daemon = _start_supervisor(p)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            client = cls.find(p)
            if client is not None:
                return client
            if daemon is None and running_pid(p) is None:
                # the supervisor woken was exiting (its controller stopped with no
                # service left, as after `controller stop`): SIGUSR1 came too late
                daemon = _start_supervisor(p)
                continue
            if daemon is not None and daemon.poll() not in (None, 0):
                error = _last_error(p)
                if "another controller is running" not in error:  # else: wait for that one
                    raise SkyctlError(
                        f"the controller exited at start ({error}); see {p.daemon_log}"
                    )
            time.sleep(0.1)
        hung = _live_controller_pid(p)
        if hung is not None:  # it runs: stopped (SIGSTOP), or too busy to answer
            raise SkyctlError(
                f"the controller (pid {hung}) runs but did not answer within "
                f"{START_TIMEOUT:.0f}s (stopped or overloaded); see {p.daemon_log}"
            )
        raise SkyctlError(
            f"the controller did not start within {START_TIMEOUT:.0f}s; see {p.daemon_log}"
        )

    # ------------------------------------------------------------------ calls
    def _request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        """The request; the first imports urllib.request (http.client, email, ssl: 30 ms
        of CPU), which ``call`` and ``stream`` then use, and which a command that asks no
        controller (--help, validate, status with none running) never needs."""
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        return req

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        req = self._request(method, path, body)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise _error_from(e, method, path) from None
        except (urllib.error.URLError, OSError) as e:
            refused = isinstance(getattr(e, "reason", e), ConnectionRefusedError)
            if refused:
                raise ControllerRefused(
                    f"cannot reach the controller at {self.base}: {e}"
                ) from None
            raise ControllerUnreachable(
                f"cannot reach the controller at {self.base}: {e}"
            ) from None

    def stream(self, path: str) -> Iterator[bytes]:
        req = self._request("GET", path)
        try:
            with urllib.request.urlopen(req, timeout=None) as r:
                while chunk := r.read1(64 * 1024):
                    yield chunk
        except urllib.error.HTTPError as e:
            raise _error_from(e, "GET", path) from None
        except (urllib.error.URLError, OSError) as e:
            raise ControllerUnreachable(
                f"cannot reach the controller at {self.base}: {e}"
            ) from None


def stored_services(p: Paths) -> list[str]:
    """Names of the services in the state database ([] when there is no database yet).

    Raises :class:`~skyctl.errors.StoreError` (one line) for a database this
    skyctl cannot use: corrupt, not ours, or written by a newer version.
    """
    return _with_store(p, lambda store: [s.name for s in store.list_services()], [])


def stored_replicas(p: Paths, names: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Per service, its live replicas as the store has them: (id, status)."""
    return _with_store(
        p,
        lambda store: {
            n: [(r.replica_id, r.status.value) for r in store.list_replicas(n)] for n in names
        },
        {},
    )


def stored_replica_clouds(p: Paths, names: list[str]) -> dict[str, set[str]]:
    """Per service, the clouds its replicas (live or ended) were placed on."""
    return _with_store(
        p,
        lambda store: {
            n: {r.location.cloud for r in store.list_replicas(n, include_terminated=True)}
            for n in names
        },
        {},
    )


def forget_services(p: Paths, names: list[str]) -> None:
    """Remove services from the store (after their instances were all stopped)."""

    def forget(store: Store) -> None:
        for n in names:
            store.delete_service(n)

    _with_store(p, forget, None)


def _with_store(p: Paths, use: Callable[[Store], T], default: T) -> T:
    if not p.db.exists():
        return default
    from skyctl.store import Store

    store = Store(p.db)
    try:
        return use(store)
    finally:
        store.close()


def _last_error(p: Paths) -> str:
    """The controller's last logged error, without the log prefix."""
    try:
        lines = p.daemon_log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines[-50:]):
        if " ERROR " in line:
            return line.split(": ", 1)[-1].strip()
    return lines[-1].strip() if lines else "no output"


#: what an API answers for a route it does not have: aiohttp's reason, as JSON
#: (controllers since the API's error middleware) or as plain text (earlier ones)
_NO_ROUTE = {404: "Not Found", 405: "Method Not Allowed"}


def _error_from(e: urllib.error.HTTPError, method: str, path: str) -> SkyctlError:
    try:
        payload = json.loads(e.read())
        message = str(payload.get("error", e.reason))
        code = int(payload.get("exit_code", 1))
    except (ValueError, AttributeError):
        message, code = f"HTTP {e.code} {e.reason}", 1
    if message in (_NO_ROUTE.get(e.code), f"HTTP {e.code} {_NO_ROUTE.get(e.code)}"):
        # a controller of an older skyctl, still running after an upgrade
        return SkyctlError(
            f"the running controller does not know {method} {path.split('?')[0]}: it runs "
            "an older skyctl than this command; restart it on this version with "
            "`skyctl controller stop && skyctl controller start` (replicas and endpoints "
            "keep running)"
        )
    if e.code == 404:
        return ServiceNotFound(message)
    if code == 2:
        return ServiceError(message)
    return SkyctlError(message)
