"""A running service, as a peer reads README.md's command table and docs/cli.md, checked
black-box through ``python -m skyctl`` against one controller shared by the module.

``web`` (two replicas of ``python3 -m http.server`` on the local provider) is
read by every test and changed by none; a test that updates or takes something
down makes a service of its own on the same controller, so the tests hold in any
order and split across pytest-xdist workers (each worker then has its own home).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.processes import kill_leftovers, pids_mentioning
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

SPEC = """\
name: {name}
service:
  readiness_probe:
    path: /
    initial_delay_seconds: 30
    period_seconds: 0.5
  replicas: {replicas}
run: exec python3 -m http.server "$PORT" --bind 127.0.0.1{extra}
"""

SERVICE_FIELDS: dict[str, Any] = {
    "name": str,
    "status": str,
    "version": int,
    "update_mode": str,
    "serving_versions": list,
    "endpoint": str,
    "ready_replicas": int,
    "cost_per_hour": (int, float),
    "accrued_cost": (int, float),
    "ondemand_cost": (int, float),
    "savings": (int, float),
    "savings_pct": (int, float),
    "replica_seconds": (int, float),
    "plan": dict,
    "failure": str,
    "last_error": str,
    "endpoint_error": str,
    "endpoint_open": bool,
    "created_at": (int, float),
    "replicas": list,
}
REPLICA_FIELDS = (
    "id version status reason location cloud region zone spot price_per_hour "
    "ondemand_price_per_hour billed_seconds accrued_cost endpoint launched_at instance_type "
    "uptime_seconds interruption_at probe_failures exit_code failure log_tail router"
).split()


class Home:
    """The module's state directory, its specs, and ``serve up``'s output for ``web``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "home"
        self.path.mkdir(mode=0o700)
        self.up_web: Any = None

    def spec(self, name: str, replicas: int = 2, extra: str = "", file: str = "") -> Path:
        path = self.root / (file or f"{name}-{replicas}-{abs(hash(extra))}.yaml")
        path.write_text(SPEC.format(name=name, replicas=replicas, extra=extra))
        return path

    def run(self, *args: str, timeout: float = 120) -> Any:
        return run_cli(self.path, *args, timeout=timeout, log_level="INFO")

    def ok(self, *args: str) -> Any:
        result = self.run(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def json(self, *names: str, all_replicas: bool = False) -> list[dict[str, Any]]:
        extra = ["-a"] if all_replicas else []
        return list(json.loads(self.ok("serve", "status", *names, "-o", "json", *extra).stdout))

    def one(self, name: str) -> dict[str, Any]:
        (svc,) = self.json(name)
        return svc


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = Home(tmp_path_factory.mktemp("peer-docs-service"))
    h.up_web = h.run("serve", "up", str(h.spec("web")), "--timeout", "90")
    try:
        yield h
    finally:
        h.run("serve", "down", "--all", "-y", "--timeout", "60")
        kill_leftovers(h.path)


def live_ids(svc: dict[str, Any]) -> set[int]:
    return {r["id"] for r in svc["replicas"] if r["status"] != "TERMINATED"}


# --- serve up -------------------------------------------------------------------------


def test_serve_up_prints_the_endpoint_and_returns_once_a_replica_is_ready(home: Home) -> None:
    up = home.up_web
    assert up.returncode == 0, up.stdout + up.stderr
    svc = home.one("web")
    assert f"Service web: endpoint {svc['endpoint']}" in up.stdout
    assert f"Service web is ready at {svc['endpoint']}" in up.stdout
    assert svc["status"] == "READY" and svc["ready_replicas"] >= 1 and svc["endpoint_open"]


def test_a_second_up_of_a_running_name_is_refused_pointing_at_update(home: Home) -> None:
    result = home.run("serve", "up", str(home.spec("web")))
    assert result.returncode == 2
    assert "service 'web' already exists" in result.stderr
    assert "skyctl serve update web FILE" in result.stderr
    assert home.one("web")["version"] == 1


def test_serve_up_detach_returns_once_submitted_saying_how_to_follow(home: Home) -> None:
    result = home.ok("serve", "up", "-d", str(home.spec("detached", replicas=1)))
    assert "Service detached: endpoint http://127.0.0.1:" in result.stdout
    assert "skyctl serve status detached" in result.stdout
    assert "is ready at" not in result.stdout
    home.ok("serve", "down", "detached")


def test_serve_up_n_names_the_service_over_the_specs_name(home: Home) -> None:
    home.ok("serve", "up", "-n", "other", "-y", str(home.spec("web", replicas=1)))
    assert home.one("other")["status"] == "READY"
    home.ok("serve", "down", "other", "-y")


def test_a_spec_without_a_name_is_named_after_its_file(home: Home) -> None:
    path = home.spec("x", replicas=1, file="my spec (1).yaml")
    path.write_text(path.read_text().replace("name: x\n", ""))
    result = home.ok("serve", "up", "-d", str(path))
    assert "Service my-spec-1: endpoint" in result.stdout
    home.ok("serve", "down", "my-spec-1")


def test_serve_up_scaled_to_zero_returns_at_once_saying_the_first_request_starts_one(
    home: Home,
) -> None:
    path = home.root / "zero.yaml"
    path.write_text(
        SPEC.format(name="zero", replicas=1, extra="").replace(
            "  replicas: 1\n",
            "  replica_policy:\n    min_replicas: 0\n    max_replicas: 2\n"
            "    target_qps_per_replica: 1\n",
        )
    )
    result = home.ok("serve", "up", str(path))
    endpoint = home.one("zero")["endpoint"]
    assert (
        f"Service zero is up at {endpoint} with no replica (min_replicas: 0): "
        "the first request starts one"
    ) in result.stdout
    home.ok("serve", "down", "zero")


# --- serve status ------------------------------------------------------------------


def test_status_endpoint_prints_only_the_url_and_it_answers(home: Home) -> None:
    result = home.ok("serve", "status", "--endpoint", "web")
    url = result.stdout.strip()
    assert result.stdout == url + "\n"
    assert url == home.one("web")["endpoint"] and url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.status == 200


def test_status_endpoint_without_a_name_is_a_usage_error(home: Home) -> None:
    result = home.run("serve", "status", "--endpoint")
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_status_json_has_every_documented_service_field_with_its_type(home: Home) -> None:
    svc = home.one("web")
    for field, kind in SERVICE_FIELDS.items():
        assert field in svc, field
        assert isinstance(svc[field], kind), (field, svc[field])
    assert svc["status"] in {
        "CONTROLLER_INIT",
        "REPLICA_INIT",
        "READY",
        "NO_REPLICA",
        "SHUTTING_DOWN",
        "FAILED",
    }
    assert svc["update_mode"] in {"rolling", "blue_green"}
    assert svc["failure"] == "" and svc["last_error"] == "" and svc["endpoint_error"] == ""
    assert "policy" in svc["plan"]
    assert svc["ready_replicas"] == sum(r["status"] == "READY" for r in svc["replicas"])


def test_status_json_replicas_have_every_documented_field(home: Home) -> None:
    svc = home.one("web")
    assert svc["replicas"]
    for r in svc["replicas"]:
        assert set(REPLICA_FIELDS) <= set(r), set(REPLICA_FIELDS) - set(r)
        assert r["location"] == f"{r['cloud']}/{r['region']}/{r['zone']}"
        assert isinstance(r["spot"], bool) and isinstance(r["log_tail"], list)
        if r["status"] == "READY":
            assert r["reason"] is None and r["uptime_seconds"] is not None
            assert r["endpoint"].startswith("http://127.0.0.1:")


def test_dash_dash_json_is_the_same_list_as_dash_o_json(home: Home) -> None:
    a = json.loads(home.ok("serve", "status", "--json").stdout)
    b = json.loads(home.ok("serve", "status", "-o", "json").stdout)
    assert isinstance(a, list) and isinstance(b, list)
    assert [s["name"] for s in a] == [s["name"] for s in b]
    assert "web" in [s["name"] for s in a]


def test_status_json_of_one_name_is_a_list_of_that_service_only(home: Home) -> None:
    services = home.json("web")
    assert [s["name"] for s in services] == ["web"]


def test_status_of_several_names_lists_those_services_as_sky_serve_status_does(
    home: Home,
) -> None:
    home.ok("serve", "up", "-d", str(home.spec("second", replicas=1)))
    try:
        assert sorted(s["name"] for s in home.json("web", "second")) == ["second", "web"]
        table = home.ok("serve", "status", "web", "second").stdout
        assert "web " in table and "second " in table
        missing = home.run("serve", "status", "web", "nosuch")
        assert missing.returncode == 2 and "no service named 'nosuch'" in missing.stderr
    finally:
        home.ok("serve", "down", "second")


def test_status_in_a_pipe_has_plain_columns_with_sky_serve_status_headers(home: Home) -> None:
    out = home.ok("serve", "status", "web").stdout
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == "Services"
    assert lines[1].split()[:6] == ["NAME", "VERSION", "UPTIME", "STATUS", "REPLICAS", "ENDPOINT"]
    row = lines[2].split()
    assert row[0] == "web" and "READY" in row and "2/2" in row
    header = lines[lines.index("Service Replicas") + 1].split()
    assert header[:8] == [
        "SERVICE_NAME",
        "ID",
        "VERSION",
        "ENDPOINT",
        "LAUNCHED",
        "INFRA",
        "RESOURCES",
        "STATUS",
    ]


def test_status_verbose_is_sky_serve_status_v_and_shows_ended_replicas_too(home: Home) -> None:
    for flag in ("-v", "--verbose", "-a", "--all-replicas"):
        assert home.ok("serve", "status", "web", flag).stdout.startswith("Services")


# --- serve logs --------------------------------------------------------------------


def first_live(home: Home) -> int:
    return min(live_ids(home.one("web")))


def test_logs_of_a_replica_as_a_second_argument_prints_its_output_as_text(home: Home) -> None:
    rid = first_live(home)
    out = home.ok("serve", "logs", "web", str(rid)).stdout
    assert out.startswith("Serving HTTP on 127.0.0.1 port ")
    assert "b'" not in out and "\\n" not in out
    assert '"GET / HTTP/1.1" 200' in out  # the probes


def test_logs_replica_flag_no_follow_and_argument_are_the_same_log(home: Home) -> None:
    rid = str(first_live(home))
    first = home.ok("serve", "logs", "web", rid, "--tail", "1", "--no-follow").stdout
    other = home.ok("serve", "logs", "web", "--replica", rid).stdout
    assert first.splitlines()[0].split('"')[1] in other
    assert other.splitlines()[0].startswith("Serving HTTP on 127.0.0.1 port ")


def test_logs_without_a_replica_print_the_newest_live_replicas_output(home: Home) -> None:
    newest = max(live_ids(home.one("web")))
    port = next(r for r in home.one("web")["replicas"] if r["id"] == newest)["endpoint"]
    out = home.ok("serve", "logs", "web").stdout
    assert out.startswith(f"Serving HTTP on 127.0.0.1 port {port.rsplit(':', 1)[1]} ")


def test_logs_tail_prints_only_the_last_n_lines(home: Home) -> None:
    rid = str(first_live(home))
    assert len(home.ok("serve", "logs", "web", rid, "--tail", "2").stdout.splitlines()) == 2
    assert home.ok("serve", "logs", "web", rid, "--tail", "0").stdout == ""


def test_logs_events_are_dated_and_say_created_launched_and_ready(home: Home) -> None:
    out = home.ok("serve", "logs", "web", "--events").stdout
    lines = out.splitlines()
    assert lines[0].split()[2] == "created:" and "version 1" in lines[0]
    assert all(line[:4].isdigit() and line[4] == "-" and line[13] == ":" for line in lines)
    assert any(" launch replica " in line for line in lines)
    assert any(" ready replica " in line for line in lines)
    assert len(home.ok("serve", "logs", "web", "--events", "--tail", "2").stdout.splitlines()) == 2


def test_logs_controller_and_load_balancer_print_the_controller_log_and_its_router_lines(
    home: Home,
) -> None:
    controller = home.ok("serve", "logs", "web", "--controller").stdout
    assert " skyctl.controller" in controller
    balancer = home.ok("serve", "logs", "web", "--load-balancer").stdout
    assert "router web: listening on 127.0.0.1:" in balancer
    assert all(
        " skyctl.router" in ln or " skyctl.controller.runtime" in ln for ln in balancer.splitlines()
    )
    tail = home.ok("serve", "logs", "web", "--controller", "--tail", "1").stdout
    assert len(tail.splitlines()) == 1


@pytest.mark.parametrize("args", [["99"], ["--replica", "99"], ["99", "--tail", "1"]])
def test_logs_of_a_replica_the_service_never_had_is_exit_2_naming_it(
    home: Home, args: list[str]
) -> None:
    result = home.run("serve", "logs", "web", *args)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: service 'web' has no replica 99"


def test_logs_sync_down_writes_every_log_into_one_folder_and_prints_it(home: Home) -> None:
    out = home.ok("serve", "logs", "web", "--sync-down").stdout.strip()
    assert out.startswith("Service web logs: ")
    folder = Path(out.split("logs: ", 1)[1])
    try:
        names = {p.name for p in folder.iterdir()}
        assert {"controller.log", "load_balancer.log"} <= names
        for rid in live_ids(home.one("web")):
            log = (folder / f"replica-{rid}.log").read_text()
            assert log.startswith("Serving HTTP on 127.0.0.1 port ")
    finally:
        shutil.rmtree(folder)


# --- serve retry -------------------------------------------------------------------


def test_retry_of_a_service_that_is_not_failed_says_nothing_else_changes(home: Home) -> None:
    before = home.one("web")
    out = home.ok("serve", "retry", "web").stdout
    assert out.strip() == (
        "Service web is not FAILED (READY): version 1's failures and backoff are "
        "forgotten; nothing else changes"
    )
    after = home.one("web")
    assert after["version"] == before["version"] and live_ids(after) == live_ids(before)


# --- serve update ------------------------------------------------------------------


def test_update_with_an_identical_spec_makes_no_new_version_and_no_relaunch(home: Home) -> None:
    before = home.one("web")
    out = home.ok("serve", "update", "web", str(home.spec("web"))).stdout
    assert "nothing to update" in out
    after = home.one("web")
    assert after["version"] == before["version"] == 1
    assert live_ids(after) == live_ids(before)


def test_update_naming_another_router_port_is_refused_and_the_endpoint_stays(
    home: Home,
) -> None:
    path = home.root / "web-port.yaml"
    moved = "  replicas: 2\n  router:\n    port: 1\n"
    path.write_text(home.spec("web").read_text().replace("  replicas: 2\n", moved))
    result = home.run("serve", "update", "web", str(path))
    assert result.returncode == 2
    assert "service.router.port" in result.stderr and "cannot move it" in result.stderr
    assert home.one("web")["version"] == 1


def test_update_of_only_service_keeps_the_replicas_moved_to_the_new_version(
    home: Home,
) -> None:
    home.ok("serve", "up", str(home.spec("keep")))
    before = live_ids(home.one("keep"))
    probe = home.spec("keep").read_text().replace("period_seconds: 0.5", "period_seconds: 0.4")
    path = home.root / "keep-probe.yaml"
    path.write_text(probe)
    out = home.ok("serve", "update", "keep", str(path)).stdout
    assert "version 2" in out and "no relaunch" in out
    svc = home.one("keep")
    assert svc["version"] == 2 and live_ids(svc) == before
    assert all(r["version"] == 2 and r["status"] == "READY" for r in svc["replicas"])
    home.ok("serve", "down", "keep")


@pytest.mark.parametrize("mode", ["rolling", "blue_green"])
def test_update_of_run_replaces_every_replica_and_returns_once_all_run_the_new_version(
    home: Home, mode: str
) -> None:
    name = f"roll-{mode.replace('_', '-')}"
    home.ok("serve", "up", str(home.spec(name)))
    old = live_ids(home.one(name))
    changed = home.spec(name, extra=" --directory .")
    args = ["serve", "update", "-n", name, str(changed)]
    out = home.ok(*args, *(["--mode", mode] if mode != "rolling" else [])).stdout
    assert f"{mode} update to version 2 started" in out
    assert f"Service {name} runs version 2 on 2 ready replica(s)" in out
    svc = home.json(name, all_replicas=True)[0]
    assert svc["version"] == 2 and svc["update_mode"] == mode and svc["serving_versions"] == [2]
    live = [r for r in svc["replicas"] if r["status"] != "TERMINATED"]
    assert len(live) == 2 and all(r["version"] == 2 and r["status"] == "READY" for r in live)
    assert not old & live_ids(svc)
    ended = [r for r in svc["replicas"] if r["id"] in old]
    assert all(r["status"] == "TERMINATED" and r["reason"] == "UPDATED" for r in ended)
    home.ok("serve", "down", name)


def test_a_rolling_update_to_a_new_probe_path_keeps_the_old_replicas_serving_meanwhile(
    home: Home,
) -> None:
    """Each replica answers its own version's probe: the old ones do not serve the new
    path (they were probed on it, went NOT_READY and were taken down at once, so
    the service served no version until a new replica was ready)."""
    home.ok("serve", "up", str(home.spec("probed")))
    path = home.root / "probed-v2.yaml"
    path.write_text(
        home.spec("probed")
        .read_text()
        .replace("path: /\n", "path: /v2.txt\n")
        .replace("run: exec", "run: echo v2 > v2.txt && exec")
    )
    out = home.ok("serve", "update", "probed", str(path)).stdout
    assert "serving none" not in out, out
    assert "Service probed runs version 2 on 2 ready replica(s)" in out
    events = home.ok("serve", "logs", "probed", "--events").stdout
    assert "not_ready" not in events and "HTTP 404" not in events, events
    home.ok("serve", "down", "probed")


def test_update_detach_returns_once_the_new_version_is_recorded(home: Home) -> None:
    home.ok("serve", "up", str(home.spec("later", replicas=1)))
    out = home.ok("serve", "update", "later", str(home.spec("later", 1, " --directory ."))).stdout
    home.ok("serve", "update", "later", "-d", str(home.spec("later", 1, " --directory /")))
    assert "runs version 2" in out
    assert home.one("later")["version"] == 3
    home.ok("serve", "down", "later")


# --- serve down --------------------------------------------------------------------


def test_down_replica_id_ends_it_as_user_and_a_replacement_keeps_the_target(
    home: Home,
) -> None:
    home.ok("serve", "up", str(home.spec("shed")))
    victim = min(live_ids(home.one("shed")))
    out = home.ok("serve", "down", "shed", "--replica-id", str(victim)).stdout
    assert f"Replica {victim} of shed is shutting down" in out

    def replaced() -> bool:
        svc = home.json("shed", all_replicas=True)[0]
        ended = [r for r in svc["replicas"] if r["id"] == victim]
        ready = [r for r in svc["replicas"] if r["status"] == "READY"]
        return (
            bool(ended)
            and ended[0]["reason"] == "USER"
            and ended[0]["status"] == "TERMINATED"  # (a second down while SHUTTING_DOWN: 0)
            and len(ready) == 2
        )

    assert wait_until(replaced, 60, every=1), home.json("shed", all_replicas=True)
    again = home.run("serve", "down", "shed", "--replica-id", str(victim))
    assert again.returncode == 2
    assert f"service 'shed' has no live replica {victim}" in again.stderr
    home.ok("serve", "down", "shed")


def test_down_verifies_nothing_is_left_then_the_service_is_forgotten(home: Home) -> None:
    home.ok("serve", "up", str(home.spec("gone")))
    out = home.ok("serve", "down", "gone").stdout
    assert "Service gone is down: every replica terminated, nothing left on local." in out
    assert "gone" not in [s["name"] for s in home.json()]
    result = home.run("serve", "status", "gone")
    assert result.returncode == 2 and "no service named 'gone'" in result.stderr
    assert home.one("web")["status"] == "READY"  # the others keep running


def test_down_of_several_names_takes_each_down(home: Home) -> None:
    home.ok("serve", "up", "-d", str(home.spec("one", replicas=1)))
    home.ok("serve", "up", "-d", str(home.spec("two", replicas=1)))
    out = home.ok("serve", "down", "one", "two", "-y").stdout
    assert "Service one is down" in out and "Service two is down" in out
    assert {"one", "two"}.isdisjoint(s["name"] for s in home.json())


@pytest.mark.parametrize("flag", ["--purge", "-p"])
def test_down_purge_of_a_service_whose_teardown_works_is_a_plain_verified_down(
    home: Home, flag: str
) -> None:
    name = f"purged{flag.count('-')}"
    home.ok("serve", "up", "-d", str(home.spec(name, replicas=1)))
    out = home.ok("serve", "down", name, flag).stdout
    assert f"Service {name} is down" in out or f"Purged {name}" in out
    assert name not in [s["name"] for s in home.json()]


def replica_processes(home: Home, name: str) -> list[int]:
    """Processes started for a replica of ``name`` under this home (by their environment)."""
    mine = []
    for pid in pids_mentioning(f"SKYCTL_SERVICE={name}\0"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(home.path).encode() in environ:
            mine.append(pid)
    return mine


def test_no_replica_process_of_a_downed_service_is_left(home: Home) -> None:
    home.ok("serve", "up", str(home.spec("leak")))
    assert len(replica_processes(home, "leak")) >= 2
    home.ok("serve", "down", "leak")
    assert replica_processes(home, "leak") == []
