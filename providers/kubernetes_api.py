"""The one wrapper around the official ``kubernetes`` client: contexts, calls,
retries, error translation and the blocking pod watch.

Everything the provider asks a cluster goes through :class:`KubeApi`, so tests
fake one thing (the API server). Blocking client calls run in
``asyncio.to_thread``; throttling, 5xx and connection errors are retried with
exponential backoff and jitter on the injected clock, then become
:class:`~skyctl.errors.TransientError`. Errors are translated here:

=================  ==============================================
API answer         skyctl error
=================  ==============================================
401, 403           ConfigError (403 "exceeded quota": QuotaError)
404                NotFoundError
409                AlreadyExists (internal: the provider's idempotency)
400, 422           ConfigError (the object was rejected)
429, 5xx, network  TransientError after retries
TLS certificate    ConfigError after retries (it never verifies)
=================  ==============================================

The wait before a retry is the backoff (0.5 s doubling, with jitter) or the
server's ``Retry-After`` (seconds, as the API server's priority and fairness
sends on 429 and an apiserver shedding load on 503), whichever is longer,
capped at :data:`RETRY_AFTER_CAP` so a hostile or confused server cannot park
a call for an hour. Each retry is logged with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from providers.backoff import certificate_problem
from providers.kubernetes_config import IN_CLUSTER, KubeConfig
from skyctl.clock import Clock
from skyctl.errors import (
    ConfigError,
    NotFoundError,
    ProviderError,
    QuotaError,
    SkyctlError,
    TransientError,
)

try:
    import urllib3
    from kubernetes import client as kclient
    from kubernetes import config as kconfig
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.watch.watch import iter_resp_lines
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ConfigError(
        f"the Kubernetes provider needs the kubernetes client ({e.name} is missing): "
        "pip install 'skyctl[kubernetes]'"
    ) from None

__all__ = ["AlreadyExists", "Discovery", "KubeApi", "WatchHandle", "discover"]

log = logging.getLogger("skyctl.providers.kubernetes")
T = TypeVar("T")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
ATTEMPTS = 4
BACKOFF_SECONDS = 0.5
REQUEST_TIMEOUT = (10.0, 30.0)  # connect, read
RETRYABLE = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 30.0  # seconds: the longest a server's Retry-After makes a call wait
CERT_HINT = (
    "the TLS certificate did not verify; check the kubeconfig's certificate-authority "
    "(-data), server address and the proxy (HTTPS_PROXY)"
)


class AlreadyExists(ProviderError):
    """409 on create: an object of that name exists (idempotent launches)."""


class Throttled(TransientError):
    """429/503 with a ``Retry-After``: ``retry_after`` is the wait asked for (capped)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gone(ProviderError):
    """410: the watch's resourceVersion is too old; list again."""


@dataclass(frozen=True)
class Discovery:
    """Where the clusters are: kubeconfig contexts, or the cluster we run in."""

    config_file: str | None  # None: in-cluster
    contexts: tuple[str, ...]
    current: str | None
    namespaces: dict[str, str | None] = field(default_factory=dict)  # context -> its namespace


def _kubeconfig_paths(cfg: KubeConfig) -> list[Path]:
    if cfg.kubeconfig:
        return [Path(cfg.kubeconfig).expanduser()]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").exists()
    )


def discover(cfg: KubeConfig) -> Discovery:
    """Read the kubeconfig (blocking, small) or detect the in-cluster account."""
    paths = [p for p in _kubeconfig_paths(cfg) if p.is_file()]
    if cfg.kubeconfig and not paths:
        raise ConfigError(f"kubernetes.kubeconfig: no such file: {cfg.kubeconfig}")
    if not paths:
        if in_cluster():
            ns_file = SERVICE_ACCOUNT_DIR / "namespace"
            ns = ns_file.read_text().strip() if ns_file.exists() else None
            return Discovery(None, (IN_CLUSTER,), IN_CLUSTER, {IN_CLUSTER: ns or None})
        raise ConfigError(
            "kubernetes: no kubeconfig found (kubernetes.kubeconfig, $KUBECONFIG or "
            "~/.kube/config) and not running inside a cluster"
        )
    joined = os.pathsep.join(str(p) for p in paths)
    try:
        contexts, current = kconfig.list_kube_config_contexts(config_file=joined)
    except (ConfigException, OSError, ValueError) as e:
        raise ConfigError(f"kubernetes: cannot read kubeconfig {joined}: {e}") from e
    names = tuple(str(c["name"]) for c in contexts or ())
    namespaces = {str(c["name"]): (c.get("context") or {}).get("namespace") for c in contexts or ()}
    return Discovery(joined, names, str(current["name"]) if current else None, namespaces)


def _message(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "{}")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except (TypeError, ValueError):
        pass
    return str(e.reason or "").strip() or f"HTTP {e.status}"


def retry_after(e: BaseException) -> float:
    """The seconds a 429/503 answer's ``Retry-After`` asks for (0 without one, or with an
    HTTP date: the backoff is used then), at most :data:`RETRY_AFTER_CAP`."""
    headers = getattr(e, "headers", None) if isinstance(e, ApiException) else None
    try:
        value = float(str((headers or {}).get("Retry-After", "")).strip())
    except ValueError:
        return 0.0
    if value != value or value <= 0:  # NaN or not a wait
        return 0.0
    return min(value, RETRY_AFTER_CAP)


def translate(e: BaseException, what: str, context: str) -> SkyctlError:
    """A client error as the skyctl error the provider contract names."""
    where = f"kubernetes/{context}: {what}"
    if isinstance(e, ApiException):
        code, msg = int(e.status or 0), _message(e)
        if code == 403 and "exceeded quota" in msg:
            return QuotaError(f"{where}: {msg}", location=f"kubernetes/{context}")
        if code in (401, 403):
            return ConfigError(f"{where}: permission denied ({code}): {msg}")
        if code == 404:
            return NotFoundError(f"{where}: {msg}")
        if code == 409:
            return AlreadyExists(f"{where}: {msg}")
        if code == 410:
            return Gone(f"{where}: {msg}")
        if code in RETRYABLE:
            wait = retry_after(e)
            if wait:
                return Throttled(f"{where}: HTTP {code}: {msg} (retry after {wait:g}s)", wait)
            return TransientError(f"{where}: HTTP {code}: {msg}")
        return ConfigError(f"{where}: rejected ({code}): {msg}")
    if isinstance(e, urllib3.exceptions.HTTPError | OSError):
        return TransientError(f"{where}: {type(e).__name__}: {e}")
    if isinstance(e, ConfigException):
        return ConfigError(f"{where}: {e}")
    return TransientError(f"{where}: unexpected answer: {type(e).__name__}: {e}")


class WatchHandle:
    """Lets another thread stop a blocking watch by shutting its socket."""

    def __init__(self) -> None:
        self.stopped = False
        self.events = 0  # lines received in this session
        self.resp: Any = None
        self._lock = threading.Lock()

    def attach(self, resp: Any) -> None:
        with self._lock:
            self.resp = resp
            stopped = self.stopped
        if stopped:
            self._shutdown(resp)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            resp = self.resp
        if resp is not None:
            self._shutdown(resp)

    @staticmethod
    def _shutdown(resp: Any) -> None:
        try:
            if hasattr(resp, "shutdown"):
                with contextlib.suppress(ValueError):  # not yet connected
                    resp.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread
                    return
            conn = getattr(resp, "connection", None) or getattr(resp, "_connection", None)
            sock = getattr(conn, "sock", None)
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _api_exception(status: Any, reason: str, body: str) -> ApiException:
    e = ApiException(status=status, reason=reason)  # older clients take no body argument
    e.body = body
    return e


def watch_pods_blocking(
    core: Any,
    namespace: str,
    selector: str,
    resource_version: str,
    timeout: int,
    deliver: Callable[[str, dict[str, Any]], None],
    handle: WatchHandle,
) -> str | None:
    """Stream pod events from ``resource_version`` until the server ends the watch.

    Calls ``deliver(type, pod)`` per event (from this thread). Returns the last
    resourceVersion seen, or None when the server says 410 (list again).
    """
    resp = core.list_namespaced_pod(
        namespace,
        label_selector=selector,
        watch=True,
        resource_version=resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=timeout,
        _preload_content=False,
        _request_timeout=(REQUEST_TIMEOUT[0], float(timeout) + 30.0),
    )
    raw = getattr(resp, "response", resp)  # newer clients wrap urllib3's response
    handle.attach(raw)
    last: str | None = resource_version
    try:
        status = getattr(raw, "status", 200)
        if isinstance(status, int) and not 200 <= status < 300:
            body = raw.data.decode("utf-8", "replace") if hasattr(raw, "data") else ""
            raise _api_exception(status, str(getattr(raw, "reason", "")), body)
        for line in iter_resp_lines(raw):
            if handle.stopped:
                break
            if not line.strip():
                continue
            handle.events += 1
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    return None
                raise _api_exception(obj.get("code"), str(obj.get("message")), json.dumps(obj))
            last = (obj.get("metadata") or {}).get("resourceVersion") or last
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                deliver(str(kind), obj)
    except (urllib3.exceptions.HTTPError, OSError, ValueError):
        if not handle.stopped:
            raise
    finally:
        raw.close()
        if hasattr(raw, "release_conn"):
            raw.release_conn()
    return last


def _close_client(api_client: Any) -> None:
    """Close an ApiClient and its pooled connections (urllib3 2 leaves those to the GC)."""
    manager = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    pools = getattr(manager, "pools", None)
    if pools is not None:
        for key in list(pools.keys()):
            pool = pools.get(key)
            if pool is not None:
                pool.close()
    api_client.close()


class KubeApi:
    """Clients per context, created on first use; calls with retries and translation."""

    def __init__(self, cfg: KubeConfig, *, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self._random = random.Random()
        self._discovery: Discovery | None = None
        self._clients: dict[str, Any] = {}  # context -> ApiClient
        self._serializer: Any = None
        self._inflight: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._lock = asyncio.Lock()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread. A cancelled caller stops waiting, but the call
        is still tracked, so :meth:`close` closes the clients only once it ended."""
        if self._closed:
            raise TransientError("kubernetes: the provider is closed")
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._inflight.add(task)
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here too: a caller that stopped waiting never will

    async def discovery(self) -> Discovery:
        if self._discovery is None:
            self._discovery = await self._in_thread(discover, self._cfg)
        return self._discovery

    async def core(self, context: str) -> Any:
        """The CoreV1Api of ``context``."""
        async with self._lock:
            if context not in self._clients:
                found = await self.discovery()
                if context not in found.contexts:
                    raise ConfigError(
                        f"kubernetes: context {context!r} is not in the kubeconfig; "
                        f"known: {', '.join(found.contexts) or 'none'}"
                    )
                self._clients[context] = await self._in_thread(self._new_client, found, context)
        return kclient.CoreV1Api(self._clients[context])

    @staticmethod
    def _new_client(found: Discovery, context: str) -> Any:
        configuration = kclient.Configuration()
        try:
            if found.config_file is None:
                kconfig.load_incluster_config(client_configuration=configuration)
            else:
                kconfig.load_kube_config(
                    config_file=found.config_file,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError) as e:
            raise ConfigError(f"kubernetes/{context}: cannot load credentials: {e}") from e
        # urllib3 would otherwise retry each request 3 times at once (no backoff, off
        # the injected clock) inside every one of our attempts
        configuration.retries = 0
        return kclient.ApiClient(configuration)

    def to_dict(self, obj: Any) -> Any:
        """A client model as the API's JSON dict (camelCase keys)."""
        if isinstance(obj, dict | list):
            return obj
        if self._serializer is None:
            self._serializer = kclient.ApiClient(kclient.Configuration())
        return self._serializer.sanitize_for_serialization(obj)

    async def watch_pods(
        self,
        context: str,
        namespace: str,
        selector: str,
        resource_version: str,
        deliver: Callable[[str, dict[str, Any]], None],
        handle: WatchHandle,
        timeout: int,
    ) -> str | None:
        """One watch session (see :func:`watch_pods_blocking`), errors translated."""
        core = await self.core(context)
        try:
            return await self._in_thread(
                watch_pods_blocking,
                core,
                namespace,
                selector,
                resource_version,
                timeout,
                deliver,
                handle,
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            raise translate(e, f"watch pods in {namespace}", context) from e

    async def call(self, context: str, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(core_v1_api)`` in a thread, retried on throttling, 5xx and network errors."""
        core = await self.core(context)
        delay = BACKOFF_SECONDS
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._in_thread(fn, core)
            except (
                ApiException,
                urllib3.exceptions.HTTPError,
                OSError,
                ConfigException,
                ValueError,
                TypeError,
            ) as e:
                err = translate(e, what, context)
                if isinstance(err, TransientError) and attempt == ATTEMPTS:
                    if certificate_problem(e):
                        err = ConfigError(f"{err} (after {ATTEMPTS} attempts): {CERT_HINT}")
                    else:
                        err = TransientError(f"{err} (after {ATTEMPTS} attempts)")
                if (
                    not isinstance(err, TransientError)
                    or attempt == ATTEMPTS
                    or ("unexpected answer" in str(err))
                ):
                    raise err from e
                wait = max(retry_after(e), delay + self._random.uniform(0, delay / 2))
                log.info("%s (attempt %d/%d); retrying in %.1fs", err, attempt, ATTEMPTS, wait)
            await self._clock.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the clients once calls still running in threads have ended."""
        self._closed = True
        while self._inflight:
            await asyncio.wait(list(self._inflight))
        clients, self._clients = self._clients, {}
        if self._serializer is not None:
            clients["-"], self._serializer = self._serializer, None
        for api_client in clients.values():
            try:
                await asyncio.to_thread(_close_client, api_client)
            except (OSError, urllib3.exceptions.HTTPError):  # pragma: no cover
                pass
