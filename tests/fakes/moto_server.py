"""A moto EC2 server on 127.0.0.1 for tests of the AWS provider, with fault injection.

The server is moto's :class:`ThreadedMotoServer` (real HTTP, the real boto3 on
the client side). Moto has no error injection, so the WSGI app is wrapped in a
small shim: :meth:`MotoEC2.fail` makes the next matching EC2 calls (an
``Action``, optionally only for one availability zone) answer with the real
EC2 XML error document and status code, e.g. ``InsufficientInstanceCapacity``
(500) for ``RunInstances`` in ``us-east-1a``. Everything else goes to moto.

Spot events that AWS causes on its own are injected through moto's backend
objects, which live in this process:

- :meth:`MotoEC2.preempt`: the instance becomes ``terminated`` with state
  reason ``Server.SpotInstanceTermination`` (what AWS reports after a spot
  interruption);
- :meth:`MotoEC2.mark_for_termination`: the instance's spot request gets the
  status ``marked-for-termination`` (what AWS shows from the two-minute notice
  on). Instances launched with ``RunInstances`` get no spot request in moto, so
  this creates one through moto's backend (tagged like the instance) and
  attaches it to the instance.

Use the session-scoped ``moto_ec2`` fixture and call :meth:`MotoEC2.reset`
between tests (``POST /moto-api/reset`` plus clearing injected faults).
"""

from __future__ import annotations

import io
import logging
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from moto.backends import get_backend
from moto.ec2.models.instances import StateReason
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

ACCOUNT = "123456789012"  # moto's default account

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, region: str) -> None:
    """Fake credentials through boto3's standard env chain; no real AWS files or IMDS."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)


@dataclass
class Fault:
    action: str
    code: str
    status: int
    zone: str | None
    times: int | None  # None: every matching call


class FaultShim:
    """WSGI middleware answering chosen EC2 calls with an AWS error document."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.faults: list[Fault] = []
        self.calls: list[dict[str, str]] = []  # every EC2 Query call seen (Action, params)
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if "Action" in params:
            with self._lock:
                self.calls.append(params)
                fault = self._take(params)
            if fault is not None:
                return self._error(fault, start_response)
        return self.app(environ, start_response)

    def _take(self, params: dict[str, str]) -> Fault | None:
        for fault in self.faults:
            if fault.action != params.get("Action"):
                continue
            if fault.zone is not None and params.get("Placement.AvailabilityZone") != fault.zone:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    @staticmethod
    def _error(fault: Fault, start_response: StartResponse) -> list[bytes]:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{fault.code}</Code>"
            f"<Message>injected {fault.code}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
        ).encode()
        reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
        start_response(
            f"{fault.status} {reason.get(fault.status, 'Error')}",
            [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))],
        )
        return [xml]


class _ShimmedMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose WSGI app is wrapped in a :class:`FaultShim`."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.shim = FaultShim(DomainDispatcherApplication(create_backend_app))

    def _server_entry(self) -> None:
        self._server = make_server(self._ip_address, self._port, self.shim, threaded=True)
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoEC2:
    """A running moto server and the handles tests use to steer it."""

    def __init__(self) -> None:
        self._server = _ShimmedMotoServer()

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    @property
    def calls(self) -> list[dict[str, str]]:
        return self._server.shim.calls

    def reset(self) -> None:
        """Forget every resource and injected fault."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        self._server.shim.faults.clear()
        self._server.shim.calls.clear()

    def fail(
        self,
        action: str,
        code: str,
        *,
        status: int = 400,
        zone: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``action`` (in ``zone`` if given) with ``code``, ``times`` times or always."""
        self._server.shim.faults.append(Fault(action, code, status, zone, times))

    def backend(self, region: str) -> Any:
        return get_backend("ec2")[ACCOUNT][region]

    def preempt(self, region: str, instance_id: str) -> None:
        """Terminate the instance the way a spot interruption does."""
        inst = self.backend(region).get_instance(instance_id)
        inst.terminate()
        inst.state_reason = StateReason(
            "Server.SpotInstanceTermination: Spot instance termination",
            "Server.SpotInstanceTermination",
        )
        inst._reason = "Server.SpotInstanceTermination: Spot instance termination"

    def purge(self, region: str, instance_id: str) -> None:
        """Stop listing an ended instance, as AWS does about an hour after it ends."""
        for reservation in self.backend(region).reservations.values():
            reservation.instances = [i for i in reservation.instances if i.id != instance_id]

    def mark_for_termination(self, region: str, instance_id: str) -> None:
        """Give the instance a spot request in status ``marked-for-termination``."""
        backend = self.backend(region)
        inst = backend.get_instance(instance_id)
        tags = {
            t["key"]: t["value"] for t in backend.describe_tags() if t["resource_id"] == inst.id
        }
        (request,) = backend.request_spot_instances(
            price="1.0",
            image_id=inst.image_id,
            count=1,
            spot_instance_type="one-time",
            valid_from=None,
            valid_until=None,
            launch_group=None,
            availability_zone_group=None,
            key_name="",
            security_groups=[],
            user_data=None,
            instance_type=inst.instance_type,
            placement=None,
            kernel_id=None,
            ramdisk_id=None,
            monitoring_enabled=False,
            subnet_id=inst.subnet_id,
            tags={"spot-instances-request": tags},
        )
        backend.terminate_instances([request.instance.id])  # the helper instance moto made
        request.instance = inst
        request._status_code = "marked-for-termination"
        request.status_message = "Spot Instance is marked for termination"


@pytest.fixture(scope="session")
def moto_ec2() -> Iterator[MotoEC2]:
    """One moto server for the test session, stopped at its end."""
    server = MotoEC2()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ec2(moto_ec2: MotoEC2, aws_env: None) -> Iterator[MotoEC2]:
    """The session's moto server, emptied before and after the test; ``aws_env`` is the
    requesting test module's own fixture (its fake credentials)."""
    moto_ec2.reset()
    yield moto_ec2
    moto_ec2.reset()
