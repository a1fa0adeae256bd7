"""TLS at the router (``service.tls``) and towards https replicas, with certificates
made at test time (trustme)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
import trustme

from skyctl.errors import ConfigError
from skyctl.router import Router
from skyctl.spec import TLS
from tests.test_router_helpers import FakeReplica, Harness, harness, section

__all__ = ["harness"]  # the fixture, used by name


@dataclass
class Certs:
    ca: trustme.CA
    tls: TLS  # the router's certfile and keyfile
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def write_cert(ca: trustme.CA, folder: Path, name: str) -> TLS:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = folder / f"{name}.crt", folder / f"{name}.key"
    cert.private_key_pem.write_to_path(str(keyfile))
    with certfile.open("wb") as out:
        for pem in cert.cert_chain_pems:
            out.write(pem.bytes())
    return TLS(keyfile=str(keyfile), certfile=str(certfile))


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certs(ca, write_cert(ca, tmp_path, "router"), ca_file)


async def get(url: str, context: ssl.SSLContext | bool) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=context) as resp:
            return resp.status, await resp.text(), resp.headers.get("X-Request-Id", "")


async def test_the_endpoint_serves_https_with_the_spec_certificate(
    harness: Harness, certs: Certs
) -> None:
    replica = await harness.replica(1)
    router, url = await harness.router([replica.backend], replace(section(), tls=certs.tls))
    assert router.scheme == "https" and url.startswith("https://")
    status, text, _ = await get(url + "/", certs.client_context())
    assert (status, text) == (200, "replica-1")
    assert replica.seen[0].headers["X-Forwarded-Proto"] == "https"


async def test_a_client_not_trusting_the_certificate_is_refused(
    harness: Harness, certs: Certs
) -> None:
    _, url = await harness.router([], replace(section(), tls=certs.tls))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(url + "/-/skyctl/health", ssl.create_default_context())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_below_1_2_is_refused(harness: Harness, certs: Certs) -> None:
    _, url = await harness.router([], replace(section(), tls=certs.tls))
    old = certs.client_context()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would speak TLS 1.1
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(aiohttp.ClientConnectorError):
        await get(url + "/-/skyctl/health", old)


async def test_plain_http_to_a_tls_endpoint_gets_no_answer(harness: Harness, certs: Certs) -> None:
    _, url = await harness.router([], replace(section(), tls=certs.tls))
    with pytest.raises(aiohttp.ClientError):
        await get(url.replace("https://", "http://") + "/-/skyctl/health", False)


async def test_unreadable_certificate_files_give_a_one_line_config_error(
    harness: Harness, certs: Certs, tmp_path: Path
) -> None:
    bad = TLS(keyfile=certs.tls.keyfile, certfile=str(tmp_path / "missing.crt"))
    router = Router("svc", replace(section(), tls=bad), clock=harness.clock)
    with pytest.raises(ConfigError, match=r"^service\.tls \(certfile .*missing\.crt") as caught:
        await router.start("127.0.0.1", 0)
    assert "\n" not in str(caught.value) and not router.listening


async def test_new_certificate_files_are_used_for_new_connections(
    harness: Harness, certs: Certs, tmp_path: Path
) -> None:
    router, url = await harness.router([], replace(section(), tls=certs.tls))
    other_ca = trustme.CA()
    rotated = write_cert(other_ca, tmp_path, "rotated")
    router.reconfigure(replace(section(), tls=rotated))
    trusting_new = ssl.create_default_context()
    other_ca.configure_trust(trusting_new)
    assert (await get(url + "/-/skyctl/health", trusting_new))[0] == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(url + "/-/skyctl/health", certs.client_context())


# ---- towards replicas --------------------------------------------------------------------


async def https_replica(harness: Harness, certs: Certs, tmp_path: Path) -> FakeReplica:
    replica_tls = write_cert(certs.ca, tmp_path, "replica")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(replica_tls.certfile, replica_tls.keyfile)
    return await harness.replica(1, ssl_context=context)


async def test_https_replicas_are_reached_over_verified_tls(
    harness: Harness, certs: Certs, tmp_path: Path
) -> None:
    replica = await https_replica(harness, certs, tmp_path)
    assert replica.backend.url.startswith("https://")
    sec = section(replica_ca_file=str(certs.ca_file))
    _, url = await harness.router([replica.backend], sec)
    status, text, _ = await get(url + "/", False)
    assert (status, text) == (200, "replica-1")


async def test_an_https_replica_with_an_untrusted_certificate_is_not_used(
    harness: Harness, certs: Certs, tmp_path: Path
) -> None:
    replica = await https_replica(harness, certs, tmp_path)
    _, url = await harness.router([replica.backend], section())  # system CAs only
    status, _, _ = await get(url + "/", False)
    assert status == 502 and replica.hits == 0
    assert harness.backend_errors == [1]


async def test_a_bad_replica_ca_file_gives_a_one_line_config_error(
    harness: Harness, tmp_path: Path
) -> None:
    router = Router("svc", section(replica_ca_file=str(tmp_path / "no.pem")), clock=harness.clock)
    with pytest.raises(ConfigError, match=r"^service\.router\.replica_ca_file: "):
        await router.start("127.0.0.1", 0)
