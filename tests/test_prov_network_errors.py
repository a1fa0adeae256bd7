"""Network errors on the way to a cloud's API, through each cloud's real client library.

A refused or cut connection, a proxy that is down, a TLS handshake cut short:
each is retried with backoff up to the provider's cap and then ends as a
TransientError naming what kept failing (the controller tries again on a later
tick). A TLS certificate that does not verify never heals by retrying: after
the same retries it ends as a ConfigError that says the certificate is the
problem (the cloud shows as unusable with that reason, not as "try later").

The servers here are real sockets on 127.0.0.1: :class:`Listener` counts the
connections it is offered, so each test shows how many attempts were made.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from providers.aws import AWSProvider
from providers.backoff import certificate_problem
from skyctl.clock import FakeClock
from skyctl.errors import ConfigError, TransientError
from tests.fakes.moto_server import fake_aws_credentials
from tests.test_aws_provider import drive


class Listener:
    """A TCP server on 127.0.0.1 that counts connections.

    ``tls``: it answers the handshake with a certificate no client trusts;
    otherwise it closes each connection at once (a handshake or request cut short)."""

    def __init__(self, *, tls: bool) -> None:
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._ctx: ssl.SSLContext | None = None
        if tls:
            ca = trustme.CA()  # trusted by nobody: the clients use their default CAs
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ctx)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                if self._ctx is not None:
                    conn.settimeout(5)
                    with contextlib.suppress(OSError):
                        self._ctx.wrap_socket(conn, server_side=True).close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def untrusted() -> Iterator[Listener]:
    server = Listener(tls=True)
    yield server
    server.close()


@pytest.fixture
def hangup() -> Iterator[Listener]:
    server = Listener(tls=False)
    yield server
    server.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def dead_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


# AWS (botocore) -------------------------------------------------------------------------


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy_env: None) -> None:
    fake_aws_credentials(monkeypatch, tmp_path, "us-east-1")


async def _aws_list(clock: FakeClock, endpoint: str) -> None:
    provider = AWSProvider({"endpoint_url": endpoint, "regions": ["us-east-1"]}, clock=clock)
    try:
        await drive(clock, provider.list_instances("svc"))
    finally:
        await provider.close()


async def test_aws_an_untrusted_certificate_is_retried_then_a_config_error_naming_it(
    aws_env: None, clock: FakeClock, untrusted: Listener
) -> None:
    with pytest.raises(ConfigError) as info:
        await _aws_list(clock, untrusted.url)
    message = str(info.value)
    assert "certificate" in message and "AWS_CA_BUNDLE" in message and "5 attempts" in message
    assert "\n" not in message
    assert untrusted.connections == 5


async def test_aws_a_handshake_cut_short_is_retried_then_a_transient_error(
    aws_env: None, clock: FakeClock, hangup: Listener
) -> None:
    with pytest.raises(TransientError, match="still failing after 5 attempts"):
        await _aws_list(clock, hangup.url)
    assert hangup.connections == 5


async def test_aws_a_proxy_that_is_down_is_retried_then_a_transient_error_naming_it(
    aws_env: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{dead_port()}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(TransientError, match="after 5 attempts") as info:
        await _aws_list(clock, "https://ec2.us-east-1.amazonaws.com")
    assert proxy in str(info.value) and "ProxyConnectionError" in str(info.value)


def test_certificate_problem_sees_through_wrapped_causes() -> None:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
    try:
        try:
            raise cause
        except ssl.SSLError as e:
            raise OSError("wrapped") from e
    except OSError as outer:
        assert certificate_problem(outer)
    assert not certificate_problem(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert not certificate_problem(ConnectionResetError(104, "reset"))


# GCP (google-cloud-compute over requests) -----------------------------------------------


async def _gcp_list(clock: FakeClock, endpoint: str) -> None:
    from providers.gcp import GCPProvider

    config = {
        "project": "proj",
        "api_endpoint": endpoint,
        "credentials": "anonymous",
        "regions": ["us-central1"],
    }
    provider = GCPProvider(config, clock=clock)
    try:
        await drive(clock, provider.list_instances("svc"))
    finally:
        await provider.close()


async def test_gcp_an_untrusted_certificate_is_retried_then_a_config_error_naming_it(
    no_proxy_env: None, clock: FakeClock, untrusted: Listener
) -> None:
    with pytest.raises(ConfigError) as info:
        await _gcp_list(clock, untrusted.url)
    message = str(info.value)
    assert "certificate" in message and "REQUESTS_CA_BUNDLE" in message, message
    assert "\n" not in message
    assert untrusted.connections == 5


async def test_gcp_a_handshake_cut_short_is_retried_then_a_transient_error(
    no_proxy_env: None, clock: FakeClock, hangup: Listener
) -> None:
    with pytest.raises(TransientError, match="after 5 attempts"):
        await _gcp_list(clock, hangup.url)
    assert hangup.connections == 5


# Azure (azure-core over aiohttp) --------------------------------------------------------


async def _azure_list(clock: FakeClock, base_url: str) -> None:
    from providers.azure import AzureProvider
    from tests.fakes.azure_server import FakeCredential

    config = {
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group": "skyctl",
        "base_url": base_url,
        "ssh_public_key": "ssh-rsa AAAAB3NzaC1yc2E fake@skyctl",
        "poll_interval_seconds": 0,
    }
    provider = AzureProvider(config, clock=clock, credential=FakeCredential())
    try:
        await drive(clock, provider.list_instances("svc"))
    finally:
        await provider.close()


async def test_azure_an_untrusted_certificate_is_retried_then_a_config_error_naming_it(
    no_proxy_env: None, clock: FakeClock, untrusted: Listener
) -> None:
    with pytest.raises(ConfigError) as info:
        await _azure_list(clock, untrusted.url)
    message = str(info.value)
    assert "certificate" in message and "azure.ca_bundle" in message, message
    assert "\n" not in message
    assert untrusted.connections >= 5


async def test_azure_a_handshake_cut_short_is_retried_then_a_transient_error(
    no_proxy_env: None, clock: FakeClock, hangup: Listener
) -> None:
    with pytest.raises(TransientError, match="after 5 attempts"):
        await _azure_list(clock, hangup.url)
    assert hangup.connections >= 5


# Kubernetes (the official client over urllib3) ------------------------------------------


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: skyctl}}]\n"
    )
    return path


async def _k8s_list(clock: FakeClock, kubeconfig: Path) -> None:
    from providers.kubernetes import KubernetesProvider

    provider = KubernetesProvider({"kubeconfig": str(kubeconfig), "contexts": ["c"]}, clock=clock)
    try:
        await drive(clock, provider.list_instances("svc"))
    finally:
        await provider.close()


async def test_kubernetes_an_untrusted_certificate_is_retried_then_a_config_error_naming_it(
    no_proxy_env: None, clock: FakeClock, untrusted: Listener, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        await _k8s_list(clock, _kubeconfig(tmp_path / "kubeconfig", untrusted.url))
    message = str(info.value)
    assert "certificate" in message and "certificate-authority" in message, message
    assert "\n" not in message
    assert untrusted.connections == 4  # our attempts, none hidden inside the client


async def test_kubernetes_a_handshake_cut_short_is_retried_then_a_transient_error(
    no_proxy_env: None, clock: FakeClock, hangup: Listener, tmp_path: Path
) -> None:
    with pytest.raises(TransientError, match="after 4 attempts"):
        await _k8s_list(clock, _kubeconfig(tmp_path / "kubeconfig", hangup.url))
    assert hangup.connections == 4
