"""SkyServe's smoke tests, ported to the local provider through the real CLI.

Each test is one scenario of SkyPilot's ``tests/smoke_tests/test_sky_serve.py``,
driving ``python -m skyctl serve ...`` as that file drives ``sky serve ...``,
on the YAMLs and servers of ``tests/skyserve/`` adapted under
``tests/data/skyserve/`` (shorter delays, ``$PORT`` for fixed ports, standard
library servers; see that folder's NOTICE). The assertions are SkyServe's,
translated: replica status strings and counts from ``serve status -o json``.
docs/skyserve-compat.md maps every SkyServe scenario to its test here, or says
why it is not portable.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme

from policies.failures import GIVE_UP_ROUNDS
from skyctl.client import ControllerClient, service_path, services_query
from skyctl.config import paths
from tests.helpers.processes import pids_mentioning
from tests.helpers.status import cli_status as status
from tests.helpers.status import wait_status
from tests.test_e2e_local import cli

DATA = Path(__file__).resolve().parent / "data" / "skyserve"


def reasons(svc: dict[str, Any]) -> list[str]:
    return [str(r.get("reason")) for r in svc["replicas"]]


def states(svc: dict[str, Any]) -> list[str]:
    return [str(r.get("status")) for r in svc["replicas"]]


def get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def teardown(home: Path, name: str) -> None:
    """_TEARDOWN_SERVICE: the controller's and load balancer's logs (each must
    answer), ``serve down -y NAME`` saying it is down (or that there is no such
    service: already down), then ``serve status NAME`` no longer knowing it
    (SkyServe: "Service 'NAME' not found")."""
    for args in (("logs", name, "--controller"), ("logs", name, "--load-balancer")):
        shown = cli(home, "serve", *args)
        assert shown.returncode == 0, shown.stdout + shown.stderr
    down = cli(home, "serve", "down", "-y", name)
    said = (
        down.stdout + down.stderr
    )  # SkyServe: "scheduled to be terminated|No service to terminate"
    assert (down.returncode == 0 and f"Service {name} is down" in down.stdout) or (
        down.returncode != 0 and f"no service named {name!r}" in down.stderr
    ), said
    gone = cli(home, "serve", "status", name)
    assert gone.returncode != 0 and f"no service named {name!r}" in gone.stderr, gone.stderr


def up(home: Path, yaml: str, name: str, *args: str) -> str:
    """``serve up -n NAME FILE``; the endpoint when it waited for a replica."""
    result = cli(home, "serve", "up", "-n", name, str(DATA / yaml), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    words = [
        w
        for w in result.stdout.split()
        if w.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
    ]
    return words[0] if words else ""


@pytest.mark.timeout(120)
def test_skyserve_load_balancer(skyctl_home: Path) -> None:
    """test_skyserve_load_balancer: 3 replicas under round_robin; 3 requests meet 3
    distinct replicas, which are the service's replicas, then 10 rounds meet them in
    the same order."""
    endpoint = up(skyctl_home, "load_balancer/service.yaml", "lb", "--timeout", "60")
    svc = wait_status(skyctl_home, "lb", lambda s: s["ready_replicas"] == 3, "3/3 READY")
    replica_ips = {r["endpoint"].removeprefix("http://") for r in svc["replicas"]}
    order: list[str] = []
    for _ in range(3):
        ip = get(endpoint + "/get_ip")["ip"]
        assert ip not in order
        order.append(ip)
    assert set(order) == replica_ips
    for _ in range(10):
        assert [get(endpoint + "/get_ip")["ip"] for _ in range(3)] == order
    teardown(skyctl_home, "lb")


@pytest.mark.timeout(120)
def test_skyserve_readiness_timeout_fail(skyctl_home: Path) -> None:
    """test_skyserve_readiness_timeout_fail: /health answers slower than the probe
    timeout, so the replica ends FAILED_INITIAL_DELAY. SkyServe launches no other;
    skyctl relaunches for GIVE_UP_ROUNDS rounds (with backoff) before it gives the
    version up, since a slow start can be transient (docs/skyserve-compat.md)."""
    up(skyctl_home, "readiness_timeout/task.yaml", "rt", "--detach")
    svc = wait_status(
        skyctl_home, "rt", lambda s: s["status"] == "FAILED", "service FAILED", limit=80
    )
    assert reasons(svc) == ["FAILED_INITIAL_DELAY"] * GIVE_UP_ROUNDS, svc["replicas"]
    assert "none ever READY" in svc["failure"], svc["failure"]
    teardown(skyctl_home, "rt")


@pytest.mark.timeout(120)
def test_skyserve_large_readiness_timeout(skyctl_home: Path) -> None:
    """test_skyserve_large_readiness_timeout: the same slow /health under a larger
    probe timeout becomes READY and the endpoint answers "Hi, SkyPilot here!"."""
    endpoint = up(
        skyctl_home, "readiness_timeout/task_large_timeout.yaml", "rtl", "--timeout", "60"
    )
    assert states(status(skyctl_home, "rtl")) == ["READY"]
    assert get(endpoint + "/") == "Hi, SkyPilot here!"
    teardown(skyctl_home, "rtl")


@pytest.mark.timeout(180)
def test_skyserve_failures(skyctl_home: Path) -> None:
    """test_skyserve_failures: replicas that never answer end FAILED_INITIAL_DELAY
    (both; then, as above, GIVE_UP_ROUNDS rounds and the service FAILED); after
    ``serve update`` to a server that exits after 20 requests, the replica is READY,
    then ends, and a new one is launched. SkyServe names that end FAILED_PROBING (it
    only probes); skyctl's local provider sees the process exit first: FAILED with
    its exit code (docs/skyserve-compat.md)."""
    up(skyctl_home, "failures/initial_delay.yaml", "fail", "--detach")
    svc = wait_status(
        skyctl_home, "fail", lambda s: s["status"] == "FAILED", "service FAILED", limit=80
    )
    assert reasons(svc) == ["FAILED_INITIAL_DELAY"] * (2 * GIVE_UP_ROUNDS), svc["replicas"]

    update = cli(skyctl_home, "serve", "update", "fail", str(DATA / "failures/probing.yaml"))
    assert update.returncode == 0, update.stdout + update.stderr
    wait_status(skyctl_home, "fail", lambda s: "READY" in states(s), "a READY replica")

    def v2(s: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in s["replicas"] if r["version"] == 2]

    svc = wait_status(
        skyctl_home,
        "fail",
        lambda s: len(v2(s)) >= 2 and v2(s)[0]["reason"] is not None,
        "the first replica ended, then a new one",
    )
    first = v2(svc)[0]
    assert (first["reason"], first["exit_code"]) == ("FAILED", 0), first
    assert svc["status"] != "FAILED"  # it had been READY: relaunched, not given up
    teardown(skyctl_home, "fail")


@pytest.mark.timeout(120)
def test_skyserve_user_bug_restart(skyctl_home: Path) -> None:
    """test_skyserve_user_bug_restart: a run that exits is a user bug: one FAILED
    replica, no further scaling (the service FAILED, 0 ready); ``serve update`` to a
    working server brings a READY replica and the endpoint answers, next to the
    FAILED row."""
    up(skyctl_home, "restart/user_bug.yaml", "bug", "--detach")
    svc = wait_status(
        skyctl_home, "bug", lambda s: s["status"] == "FAILED", "service FAILED", limit=60
    )
    assert reasons(svc) == ["FAILED"] and svc["ready_replicas"] == 0, svc["replicas"]
    assert svc["replicas"][0]["exit_code"] == 1  # the AssertionError's exit status

    update = cli(skyctl_home, "serve", "update", "bug", str(DATA / "restart/auto_restart.yaml"))
    assert update.returncode == 0, update.stdout + update.stderr
    svc = wait_status(skyctl_home, "bug", lambda s: "READY" in states(s), "a READY replica")
    assert get(svc["endpoint"] + "/") == "Hi, SkyPilot here!"
    assert sorted(states(svc)) == ["READY", "TERMINATED"] and "FAILED" in reasons(svc)
    teardown(skyctl_home, "bug")


@pytest.mark.timeout(120)
def test_skyserve_streaming(skyctl_home: Path) -> None:
    """test_skyserve_streaming: a chunked response arrives through the load balancer
    word by word as the replica writes it (0.2 s apart), not buffered to the end."""
    endpoint = up(skyctl_home, "streaming/streaming.yaml", "stream", "--timeout", "60")
    expected = (DATA / "streaming/example.txt").read_text().split()
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200
    words, arrived = [], []
    while line := response.readline():
        words.append(line.decode().strip())
        arrived.append(time.monotonic())
    conn.close()
    assert words == expected
    # the first word came ~1.2 s before the last: streamed, as the server wrote it
    assert arrived[-1] - arrived[0] > 0.1 * (len(expected) - 1), arrived
    teardown(skyctl_home, "stream")


@pytest.mark.timeout(120)
def test_skyserve_cancel(skyctl_home: Path) -> None:
    """test_skyserve_cancel: a client that goes away mid-response (after the first
    heartbeat) reaches the replica, whose log then says "Client disconnected,
    stopping computation" (`serve logs`, as `sky serve logs NAME 1`)."""
    endpoint = up(skyctl_home, "cancel/cancel.yaml", "cancel", "--timeout", "60")
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = client.recv(65536)  # the headers, then the first heartbeat a second later
        assert head.startswith(b"HTTP/1.1 200"), head
    deadline = time.monotonic() + 30
    while True:
        logs = cli(skyctl_home, "serve", "logs", "cancel", "--replica", "1").stdout
        if "Client disconnected, stopping computation" in logs:
            break
        assert time.monotonic() < deadline, f"the replica never saw the disconnect: {logs}"
        time.sleep(1)  # the point is what `serve logs` shows: polled on the CLI, slowly
    assert "Computing... step 9" not in logs  # stopped, not run to completion
    teardown(skyctl_home, "cancel")


@pytest.mark.timeout(120)
def test_skyserve_auto_restart(skyctl_home: Path) -> None:
    """test_skyserve_auto_restart: the READY replica's instance is killed (here: its
    process group, SIGKILL, as terminating the GCP VM); the service comes back to
    1/1 READY on a new replica and the endpoint answers again; `serve down` then
    leaves no replica process behind, and `serve status` no longer knows it."""
    endpoint = up(skyctl_home, "restart/auto_restart.yaml", "auto", "--timeout", "60")
    assert get(endpoint + "/") == "Hi, SkyPilot here!"
    pids = pids_mentioning(str(skyctl_home / "local"))
    assert pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    svc = wait_status(
        skyctl_home,
        "auto",
        # the killed replica's termination waits for the router process to report a
        # table without it (at most a report interval), so READY may come first
        lambda s: (
            s["ready_replicas"] == 1
            and [r["status"] for r in s["replicas"]] == ["TERMINATED", "READY"]
        ),
        "1/1 READY on a new replica, the killed one TERMINATED",
    )
    assert [(r["id"], r["status"]) for r in svc["replicas"]] == [(1, "TERMINATED"), (2, "READY")]
    assert get(endpoint + "/") == "Hi, SkyPilot here!"

    down = cli(skyctl_home, "serve", "down", "auto")
    assert down.returncode == 0, down.stdout + down.stderr
    assert pids_mentioning(str(skyctl_home / "local")) == []
    gone = cli(skyctl_home, "serve", "status", "auto")
    assert gone.returncode != 0 and "no service named 'auto'" in gone.stderr


def text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


@pytest.mark.timeout(150)
def test_skyserve_rolling_update(skyctl_home: Path) -> None:
    """test_skyserve_rolling_update: ``serve update`` (rolling, the default) from 2
    old replicas to 2 new ones, one of which starts late: once the first new reply
    arrives, the service runs versions 1 and 2 and, under round robin, the next
    replies mix both; at the end only version 2 serves."""
    endpoint = up(skyctl_home, "update/old.yaml", "roll", "--timeout", "60")
    assert "Hi, SkyPilot here" in text(endpoint)
    update = cli(skyctl_home, "serve", "update", "roll", str(DATA / "update/new.yaml"), "-d")
    assert update.returncode == 0, update.stdout + update.stderr

    deadline = time.monotonic() + 60
    while "Hi, new SkyPilot here!" not in text(endpoint):
        assert time.monotonic() < deadline, "no reply from the new version"
        time.sleep(0.05)  # the second new replica starts 5 s late: no need to spin
    svc = status(skyctl_home, "roll")
    ready = {r["version"] for r in svc["replicas"] if r["status"] == "READY"}
    assert ready == {1, 2}, svc["replicas"]  # mixed: one new replica is still starting
    assert svc["serving_versions"] == [1, 2]  # SkyServe's service VERSION column: "1,2"
    replies = [text(endpoint) for _ in range(4)]
    assert any("Hi, SkyPilot here" in r for r in replies), replies
    assert any("Hi, new SkyPilot here!" in r for r in replies), replies

    svc = wait_status(
        skyctl_home,
        "roll",
        lambda s: (
            [r["version"] for r in s["replicas"] if r["status"] == "READY"] == [2, 2]
            and all(r["status"] == "TERMINATED" for r in s["replicas"] if r["version"] == 1)
        ),
        "2 READY replicas of version 2, version 1 gone",
    )
    assert svc["version"] == 2 and reasons(svc).count("UPDATED") == 2, svc["replicas"]
    assert all("Hi, new SkyPilot here!" in text(endpoint) for _ in range(4))
    teardown(skyctl_home, "roll")


def ready_versions(svc: dict[str, Any]) -> list[int]:
    return sorted(r["version"] for r in svc["replicas"] if r["status"] == "READY")


def live(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in svc["replicas"] if r["status"] != "TERMINATED"]


@pytest.mark.timeout(150)
def test_skyserve_update_autoscale(skyctl_home: Path) -> None:
    """test_skyserve_update_autoscale: min_replicas 2 -> 1 -> 2 by ``serve update``;
    each time the service reaches the new count, all of the new version (1, 2, 3),
    and the endpoint answers. The first update is ``--mode blue_green``, the
    second rolling, as SkyServe's."""
    endpoint = up(skyctl_home, "update/num_min_two.yaml", "ua", "--timeout", "60")
    wait_status(skyctl_home, "ua", lambda s: ready_versions(s) == [1, 1], "2 READY, version 1")
    assert "Hi, SkyPilot here!" in text(endpoint)
    for version, yaml, count, mode in (
        (2, "num_min_one", 1, "blue_green"),
        (3, "num_min_two", 2, "rolling"),
    ):
        spec = str(DATA / f"update/{yaml}.yaml")
        update = cli(skyctl_home, "serve", "update", "ua", spec, "--mode", mode)
        assert update.returncode == 0, update.stdout + update.stderr
        svc = wait_status(
            skyctl_home,
            "ua",
            lambda s, v=version, n=count: ready_versions(s) == [v] * n and len(live(s)) == n,
            f"{count} READY of version {version}, nothing else left",
        )
        assert svc["version"] == version
        assert "Hi, SkyPilot here!" in text(endpoint)
    teardown(skyctl_home, "ua")


@pytest.mark.timeout(120)
def test_skyserve_https(skyctl_home: Path, tmp_path: Path) -> None:
    """test_skyserve_https: ``service.tls`` paths given by ``--env`` and ``--secret``
    (substituted into ``$TLS_*``): the endpoint is https and answers when the
    certificate is not checked; a check against the system's CAs fails (self
    signed); plain http to it gets no reply."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    keyfile, certfile = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    endpoint = up(
        skyctl_home,
        "https/service.yaml",
        "https",
        "--env",
        f"TLS_KEYFILE_ENV_VAR={keyfile}",
        "--secret",
        f"TLS_CERTFILE_ENV_VAR={certfile}",
        "--timeout",
        "60",
    )
    assert endpoint.startswith("https://127.0.0.1:"), endpoint
    assert status(skyctl_home, "https")["endpoint"] == endpoint

    unchecked = ssl.create_default_context()
    unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(endpoint, timeout=10, context=unchecked) as r:
        assert "Hi, SkyPilot here" in r.read().decode()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(endpoint, timeout=10, context=ssl.create_default_context())
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(endpoint.replace("https://", "http://"), timeout=10)
    teardown(skyctl_home, "https")


@pytest.mark.timeout(120)
def test_skyserve_base_ondemand_fallback(skyctl_home: Path) -> None:
    """test_skyserve_base_ondemand_fallback: min 2 spot replicas with
    base_ondemand_fallback_replicas 1: 2/2 READY, one spot and one on-demand."""
    endpoint = up(skyctl_home, "spot/base_ondemand_fallback.yaml", "base", "--timeout", "60")
    svc = wait_status(
        skyctl_home, "base", lambda s: s["ready_replicas"] == len(live(s)) == 2, "2/2 READY"
    )
    assert sorted((r["spot"], r["status"]) for r in live(svc)) == [
        (False, "READY"),
        (True, "READY"),
    ]
    assert "Hi, SkyPilot here!" in text(endpoint)
    teardown(skyctl_home, "base")


@pytest.mark.timeout(120)
def test_skyserve_spot_recovery(skyctl_home: Path) -> None:
    """test_skyserve_spot_recovery: the one spot replica is preempted (its zone's
    capacity goes, as the trace says); the service is 1/1 READY again on a new spot
    replica in the zone that has capacity, and the endpoint answers."""
    endpoint = up(skyctl_home, "spot/recovery.yaml", "recover", "--timeout", "60")
    assert "Hi, SkyPilot here!" in text(endpoint)
    first = status(skyctl_home, "recover")["replicas"][0]
    assert first["spot"] and first["zone"] == "us-east-1a", first
    svc = wait_status(
        skyctl_home,
        "recover",
        lambda s: (
            reasons(s)[0] == "PREEMPTED"
            and [(r["spot"], r["zone"], r["status"]) for r in live(s)]
            == [(True, "us-east-2a", "READY")]
        ),
        "replica 1 PREEMPTED, 1/1 READY again on spot in the other zone",
    )
    # skyctl's default spot policy (skyhedge_online) also covers the gap with an
    # on-demand replica, drained once spot is READY again (docs/skyserve-compat.md)
    assert all(r["reason"] == "SCALED_DOWN" for r in svc["replicas"] if not r["spot"])
    assert "Hi, SkyPilot here!" in text(endpoint)
    teardown(skyctl_home, "recover")


@pytest.mark.timeout(150)
def test_skyserve_dynamic_ondemand_fallback(skyctl_home: Path) -> None:
    """test_skyserve_dynamic_ondemand_fallback: 2 spot replicas with on-demand
    launched alongside while spot is not READY, then 2 spot READY and no on-demand
    left; a spot preemption brings an on-demand replica back until the spot
    replacement is READY, and again 2 spot READY, 0 on-demand."""

    def two_spot_only(s: dict[str, Any]) -> bool:
        rows = [(r["spot"], r["status"]) for r in live(s)]
        return rows == [(True, "READY"), (True, "READY")]

    up(skyctl_home, "spot/dynamic_ondemand_fallback.yaml", "dyn", "--detach")
    svc = wait_status(skyctl_home, "dyn", two_spot_only, "2 spot READY, 0 on-demand")
    assert any(not r["spot"] for r in svc["replicas"]), "no on-demand fallback at launch"
    preempted = wait_status(
        skyctl_home, "dyn", lambda s: "PREEMPTED" in reasons(s), "a spot preemption"
    )
    gone = next(r["id"] for r in preempted["replicas"] if r["reason"] == "PREEMPTED")

    def replaced(s: dict[str, Any]) -> bool:
        return two_spot_only(s) and any(r["id"] > gone for r in live(s))

    svc = wait_status(skyctl_home, "dyn", replaced, "2 spot READY again, 0 on-demand")
    after = [r for r in svc["replicas"] if r["id"] > gone]
    assert any(not r["spot"] for r in after), "no on-demand cover after the preemption"
    teardown(skyctl_home, "dyn")


def kill_controller(home: Path) -> None:
    """SIGKILL the controller daemon (as kill_and_wait_controller) and wait it out."""
    pid = int(json.loads((home / "controller.json").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        stat = Path(f"/proc/{pid}/stat")
        with contextlib.suppress(OSError):
            if stat.read_text().split(") ", 1)[1].startswith("Z"):
                break  # a zombie: dead, its parent has not reaped it yet
        assert time.monotonic() < deadline, f"controller {pid} survived SIGKILL"
        time.sleep(0.05)


def one_ready_replica_after_restart(home: Path, name: str) -> dict[str, Any]:
    """After the kill: `serve status` restarts the controller; 1/1 READY with one
    replica process on this machine (SkyServe counts the cloud's instances)."""
    svc = wait_status(
        home, name, lambda s: [r["status"] for r in live(s)] == ["READY"], "1/1 READY"
    )
    assert len(pids_mentioning(str(home / "local"))) == 1
    assert "Hi, SkyPilot here!" in text(svc["endpoint"])
    return svc


@pytest.mark.timeout(120)
def test_skyserve_ha_kill_after_ready(skyctl_home: Path) -> None:
    """test_skyserve_ha_kill_after_ready: the controller is killed with the replica
    READY; once it is back the same replica is READY (adopted, not relaunched) and
    the endpoint answers."""
    endpoint = up(skyctl_home, "high_availability/service.yaml", "ha", "--timeout", "60")
    assert "Hi, SkyPilot here!" in text(endpoint)
    kill_controller(skyctl_home)
    svc = one_ready_replica_after_restart(skyctl_home, "ha")
    assert [r["id"] for r in svc["replicas"]] == [1] and svc["endpoint"] == endpoint
    teardown(skyctl_home, "ha")


ON_ITS_WAY = ("PENDING", "PROVISIONING", "STARTING")


@pytest.mark.timeout(120)
def test_skyserve_ha_kill_during_provision(skyctl_home: Path) -> None:
    """test_skyserve_ha_kill_during_provision: the controller is killed while the
    first replica is on its way (PENDING, PROVISIONING or STARTING); once it is back
    there is one READY replica and one replica process, not two
    (_during_pending: tests/test_skyserve_smoke_more.py)."""
    up(skyctl_home, "high_availability/service.yaml", "hap", "--detach")
    seen = wait_status(
        skyctl_home,
        "hap",
        lambda s: any(r["status"] in ON_ITS_WAY for r in s["replicas"]),
        "a replica on its way",
    )
    assert seen["ready_replicas"] == 0
    kill_controller(skyctl_home)
    one_ready_replica_after_restart(skyctl_home, "hap")
    teardown(skyctl_home, "hap")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.timeout(120)
def test_skyserve_multi_ports(skyctl_home: Path, tmp_path: Path) -> None:
    """test_skyserve_multi_ports: a replica that opens two ports, one of them the
    service's (``service.ports``): the endpoint reaches it, and both of the
    replica's ports answer "Hi, SkyPilot here" directly; `serve down` stops both
    servers."""
    main, alt = free_ports(2)
    spec = tmp_path / "multi_ports.yaml"
    text_ = (DATA / "multi_ports.yaml").read_text()
    text_ = text_.replace("8080", str(main)).replace("8081", str(alt))
    spec.write_text(text_)  # its workdir is relative to the repository, where skyctl runs
    result = cli(skyctl_home, "serve", "up", "-n", "ports", str(spec), "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    svc = status(skyctl_home, "ports")
    (replica,) = svc["replicas"]
    assert replica["endpoint"] == f"http://127.0.0.1:{main}"
    assert "Hi, SkyPilot here" in text(svc["endpoint"])
    assert "Hi, SkyPilot here" in text(replica["endpoint"])
    assert "Hi, SkyPilot here" in text(f"http://127.0.0.1:{alt}")
    teardown(skyctl_home, "ports")
    assert pids_mentioning(str(skyctl_home / "local")) == []  # both servers stopped


@pytest.mark.timeout(150)
def test_skyserve_new_autoscaler_update_rolling(skyctl_home: Path) -> None:
    """test_skyserve_new_autoscaler_update[rolling]: from 2 on-demand replicas to 5
    spot ones with base_ondemand_fallback_replicas 1; at the end 4 spot READY and 1
    on-demand READY, all of version 2, the old ones gone, the endpoint answering."""
    endpoint = up(skyctl_home, "update/new_autoscaler_before.yaml", "nau", "--timeout", "60")
    wait_status(skyctl_home, "nau", lambda s: ready_versions(s) == [1, 1], "2 READY, version 1")
    assert "Hi, SkyPilot here" in text(endpoint)
    after = str(DATA / "update/new_autoscaler_after.yaml")
    update = cli(skyctl_home, "serve", "update", "nau", after, "-d")
    assert update.returncode == 0, update.stdout + update.stderr

    def done(s: dict[str, Any]) -> bool:
        rows = sorted((r["spot"], r["status"], r["version"]) for r in live(s))
        return rows == [(False, "READY", 2)] + [(True, "READY", 2)] * 4

    svc = wait_status(skyctl_home, "nau", done, "4 spot + 1 on-demand READY at version 2")
    assert svc["version"] == 2
    assert [r["reason"] for r in svc["replicas"] if r["version"] == 1] == ["UPDATED"] * 2
    assert "Hi, SkyPilot here" in text(endpoint)
    teardown(skyctl_home, "nau")


def server_env() -> tuple[str, str]:
    """bump_version_*.yaml copy SkyPilot's http_server example from $SERVER_DIR."""
    return "--env", f"SERVER_DIR={DATA / 'update'}"


@pytest.mark.timeout(150)
def test_skyserve_fast_update(skyctl_home: Path) -> None:
    """test_skyserve_fast_update: an update that changes only ``service:`` (replicas
    2 -> 3, ``--mode blue_green``) keeps the two READY replicas, same ids, moved to
    version 2, and launches one more; back to 2 replicas (rolling, the default) keeps
    them again at version 3 and scales one down. Nothing is ever relaunched."""
    env = server_env()
    endpoint = up(skyctl_home, "update/bump_version_before.yaml", "fu", *env, "--timeout", "60")
    svc = wait_status(skyctl_home, "fu", lambda s: ready_versions(s) == [1, 1], "2 READY, v1")
    assert "Hi, SkyPilot here" in text(endpoint)
    first = sorted(r["id"] for r in svc["replicas"])
    after = str(DATA / "update/bump_version_after.yaml")
    update = cli(skyctl_home, "serve", "update", "fu", after, *env, "--mode", "blue_green", "-d")
    assert update.returncode == 0, update.stdout + update.stderr
    assert f"replica(s) {', '.join(map(str, first))} kept (no relaunch)" in update.stdout

    svc = status(skyctl_home, "fu")  # at once: the kept replicas serve as version 2
    assert svc["version"] == 2
    assert [(r["id"], r["status"]) for r in svc["replicas"] if r["version"] == 2][:2] == [
        (first[0], "READY"),
        (first[1], "READY"),
    ]
    svc = wait_status(skyctl_home, "fu", lambda s: ready_versions(s) == [2] * 3, "3 READY, v2")
    ids = sorted(r["id"] for r in svc["replicas"])
    assert ids[:2] == first and len(ids) == 3, svc["replicas"]  # one added, none replaced
    assert "Hi, SkyPilot here" in text(endpoint)

    before = str(DATA / "update/bump_version_before.yaml")
    update = cli(skyctl_home, "serve", "update", "fu", before, *env, "-d")  # rolling
    assert update.returncode == 0, update.stdout + update.stderr
    assert "kept (no relaunch)" in update.stdout
    svc = wait_status(
        skyctl_home,
        "fu",
        lambda s: ready_versions(s) == [3, 3] and len(live(s)) == 2,
        "2 READY of version 3, the third scaled down",
    )
    assert svc["version"] == 3 and sorted(r["id"] for r in svc["replicas"]) == ids
    assert reasons(svc).count("SCALED_DOWN") == 1 and "UPDATED" not in reasons(svc)
    assert "Hi, SkyPilot here" in text(endpoint)
    teardown(skyctl_home, "fu")


def replies(endpoint: str, until: str, limit: float = 60) -> list[str]:
    """Replies from the endpoint, one after another, up to and including 5 with ``until``."""
    out: list[str] = []
    deadline = time.monotonic() + limit
    while sum(until in r for r in out) < 5:
        assert time.monotonic() < deadline, f"never {until!r} five times: {out[-3:]}"
        out.append(text(endpoint))
    return out


@pytest.mark.timeout(150)
def test_skyserve_update(skyctl_home: Path) -> None:
    """test_skyserve_update: ``serve update --mode blue_green`` from 2 old replicas to
    2 new ones (one starts 5 s late): the old version answers alone until both new
    replicas are READY, then the new one alone (traffic never mixed); at the end 2
    READY of version 2, the old ones gone as UPDATED."""
    endpoint = up(skyctl_home, "update/old.yaml", "bg", "--timeout", "60")
    assert "Hi, SkyPilot here" in text(endpoint)
    new_yaml = str(DATA / "update/new.yaml")
    update = cli(skyctl_home, "serve", "update", "bg", new_yaml, "--mode", "blue_green", "-d")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "blue_green update to version 2 started" in update.stdout

    got = replies(endpoint, "Hi, new SkyPilot here!")
    first_new = next(i for i, r in enumerate(got) if "new SkyPilot" in r)
    assert first_new > 0 and all("new SkyPilot" not in r for r in got[:first_new])
    assert all("Hi, new SkyPilot here!" in r for r in got[first_new:]), got  # not mixed
    svc = wait_status(
        skyctl_home,
        "bg",
        lambda s: ready_versions(s) == [2, 2] and len(live(s)) == 2,
        "2 READY of version 2, version 1 gone",
    )
    assert svc["version"] == 2 and svc["update_mode"] == "blue_green"
    assert svc["serving_versions"] == [2]
    assert [r["reason"] for r in svc["replicas"] if r["version"] == 1] == ["UPDATED"] * 2
    teardown(skyctl_home, "bg")


@pytest.mark.timeout(150)
def test_skyserve_new_autoscaler_update_blue_green(skyctl_home: Path) -> None:
    """test_skyserve_new_autoscaler_update[blue_green]: from 2 on-demand replicas to 5
    (4 spot + 1 on-demand fallback), the last starting 3 s late: the two old replicas
    stay (SkyServe's check: 2 old READY, version 1) until the new version has 5 READY,
    then go together; at the end 4 spot + 1 on-demand READY at version 2, the old ones
    UPDATED. Both versions are never served at once."""
    endpoint = up(skyctl_home, "update/new_autoscaler_before.yaml", "naub", "--timeout", "60")
    wait_status(skyctl_home, "naub", lambda s: ready_versions(s) == [1, 1], "2 READY, v1")
    after = str(DATA / "update/new_autoscaler_after.yaml")
    update = cli(skyctl_home, "serve", "update", "naub", after, "--mode", "blue_green", "-d")
    assert update.returncode == 0, update.stdout + update.stderr

    # polled through the API (a CLI call takes longer than a probe period): the router's
    # versions between a new replica's first passed probe and the next tick are seen
    client = ControllerClient.find(paths(str(skyctl_home)))
    assert client is not None
    deadline, seen = time.monotonic() + 60, set()
    while True:
        svc = client.call("GET", services_query("naub"))[0]
        seen.add(tuple(svc["serving_versions"]))
        rows = sorted((r["spot"], r["status"], r["version"]) for r in live(svc))
        if rows == [(False, "READY", 2)] + [(True, "READY", 2)] * 4:
            break
        assert time.monotonic() < deadline, f"never 4 spot + 1 on-demand READY: {rows}"
        time.sleep(0.02)
    assert seen <= {(), (1,), (2,)}, seen  # never both versions at once
    assert svc["version"] == 2 and svc["serving_versions"] == [2]
    old = [r["id"] for r in svc["replicas"] if r["version"] == 1]
    assert [r["reason"] for r in svc["replicas"] if r["id"] in old] == ["UPDATED"] * 2
    # the old replicas stayed until the new version had all 5 READY, then went together
    events = client.call("GET", service_path("naub", "events") + "?limit=1000")
    ready = sorted(e["at"] for e in events if e["kind"] == "ready" and e["replica"] not in old)
    retired = [e["at"] for e in events if e["kind"] == "terminate" and e["replica"] in old]
    assert len(ready) >= 5 and len(retired) == 2, events
    assert min(retired) >= ready[4], (ready, retired)
    assert "Hi, SkyPilot here" in text(endpoint)
    teardown(skyctl_home, "naub")
