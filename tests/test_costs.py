"""Cost accounting: billed seconds x price, per replica, service, location and cloud.

Specified at three levels: the arithmetic (skyctl.store.costs), the store
(billing starts when the instance is known, ends at TERMINATED, and survives
purges and deletion), and a spot service under the controller with a fake
clock, checked against the provider's own record of when each instance
existed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyctl.cli_costs import BadTime, parse_when, render
from skyctl.controller.reconcile import KEEP_TERMINATED_SECONDS
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.store import Store, costs
from skyctl.types import Location
from tests.fakes.memory_provider import ONDEMAND_PRICE, SPOT_PRICES
from tests.helpers.cli import run_cli
from tests.test_controller import SPOT, Harness

S = ReplicaStatus
A = Location("aws", "us-east-1", "us-east-1a")
G = Location("gcp", "us-central1", "us-central1-a")


def span(
    rid: int,
    start: float | None,
    end: float | None,
    *,
    price: float = 1.0,
    od: float | None = 3.0,
    loc: Location = A,
    spot: bool = True,
) -> costs.BilledSpan:
    return costs.BilledSpan(
        service="svc",
        replica_id=rid,
        location=loc,
        spot=spot,
        instance_type="p3.2xlarge",
        price=price,
        ondemand_price=od,
        billed_from=start,
        billed_until=end,
        end_reason=None,
        had_notice=False,
        launch_attempts=1,
        purged=False,
    )


# -- the arithmetic ------------------------------------------------------------


def test_cost_is_billed_seconds_times_the_hourly_price_clipped_to_the_window() -> None:
    spans = [
        span(1, 0.0, 3600.0, price=1.2),  # one hour, ended
        span(2, 1800.0, None, price=0.6),  # still running: billed up to the window's end
        span(3, None, None),  # launch failed: never had an instance
    ]
    whole = costs.total(spans, 0.0, 7200.0)
    assert whole.replicas == 2
    assert whole.replica_seconds == pytest.approx(3600 + 5400)
    assert whole.cost == pytest.approx(1.2 + 0.6 * 1.5)
    late = costs.total(spans, 3000.0, 4000.0)  # clipped at both ends
    assert late.replica_seconds == pytest.approx(600 + 1000)
    assert late.cost == pytest.approx(1.2 * 600 / 3600 + 0.6 * 1000 / 3600)
    assert costs.total(spans, 8000.0, 9000.0).cost == pytest.approx(0.6 * 1000 / 3600)


def test_savings_compare_with_on_demand_and_an_unknown_price_saves_nothing() -> None:
    spans = [
        span(1, 0.0, 3600.0, price=1.0, od=3.0),  # saves 2
        span(2, 0.0, 3600.0, price=1.0, od=None),  # unknown on-demand price: saves 0
        span(3, 0.0, 3600.0, price=3.0, od=3.0, spot=False),  # on demand: saves 0
    ]
    t = costs.total(spans, 0.0, 3600.0)
    assert (t.cost, t.ondemand_cost, t.savings) == pytest.approx((5.0, 7.0, 2.0))
    assert t.as_dict()["savings_pct"] == pytest.approx(100 * 2 / 7, abs=0.01)


def test_the_cumulative_series_agrees_with_the_totals_at_every_time() -> None:
    spans = [
        span(1, 100.0, 3700.0, price=1.2, od=None),
        span(2, 1800.0, None, price=0.6),
        span(3, None, None),
        span(4, 2000.0, 2600.0, price=3.0, od=3.0, spot=False),
        span(5, 5000.0, 5000.0, price=9.0),  # zero length
    ]
    times = [0.0, 50.0, 100.0, 1000.0, 1800.0, 2300.0, 2600.0, 3700.0, 5000.0, 9000.0]
    for t, (cost, od) in zip(times, costs.cumulative(spans, times), strict=True):
        whole = costs.total(spans, float("-inf"), t)
        assert (cost, od) == pytest.approx((whole.cost, whole.ondemand_cost)), t
    assert costs.cumulative([], [1.0, 2.0]) == [(0.0, 0.0), (0.0, 0.0)]


def test_the_report_groups_by_service_cloud_location_and_kind() -> None:
    spans = [
        span(1, 0.0, 3600.0, loc=A),
        span(2, 0.0, 3600.0, loc=G, price=2.0),
        span(3, 0.0, 1800.0, loc=G, spot=False, price=4.0, od=4.0),
    ]
    rep = costs.report(spans, 0.0, 3600.0)
    assert rep["total"]["accrued_cost"] == pytest.approx(1 + 2 + 2)
    assert rep["by_cloud"]["aws"]["accrued_cost"] == pytest.approx(1.0)
    assert rep["by_cloud"]["gcp"]["accrued_cost"] == pytest.approx(4.0)
    assert rep["by_location"][str(G)]["replicas"] == 2
    assert rep["by_kind"]["on-demand"]["accrued_cost"] == pytest.approx(2.0)
    assert rep["by_service"]["svc"]["savings"] == pytest.approx((3 - 1) + (3 - 2) + 0)
    text = render(rep)
    assert "aws" in text and str(G) in text and "on-demand" in text


def test_windows_are_durations_back_from_now_or_iso_times() -> None:
    now = 1_800_000_000.0
    assert parse_when("90m", "--since", now) == now - 5400
    assert parse_when("1h30m", "--since", now) == now - 5400
    assert parse_when("7d", "--since", now) == now - 7 * 86400
    utc = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC).timestamp()
    assert parse_when("2027-01-15T08:00", "--since", now) == utc  # UTC unless it says
    assert parse_when("2027-01-15T09:00+01:00", "--since", now) == utc
    with pytest.raises(BadTime, match=r"--since 'yesterday': give a duration .* or an ISO 8601"):
        parse_when("yesterday", "--since", now)


@pytest.mark.parametrize(
    "window",
    [("--since", "1h", "--until", "2h"), ("--since", "2999-01-01"), ("--since", "0m")],
    ids=["reversed", "in the future", "empty"],
)
def test_a_window_that_does_not_start_before_it_ends_is_refused(
    tmp_path: Path, window: tuple[str, ...]
) -> None:
    # it reported a cost of 0 for a window from 10:28 to 09:28, exit 0
    out = run_cli(tmp_path, "serve", "cost", *window)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"error: --since {window[1]!r} is not before --until")
    assert "the window must start before it ends" in out.stderr


# -- the store -----------------------------------------------------------------


def _replica(store: Store, now: float) -> int:
    r = store.add_replica(
        "svc",
        version=1,
        location=A,
        spot=True,
        price=0.9,
        instance_type="p3.2xlarge",
        client_token=f"tok-{now}",
        now=now,
        ondemand_price=3.06,
    )
    return r.replica_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    s.create_service("svc", "name: svc\n", now=0.0)
    yield s
    s.close()


def test_billing_starts_when_the_instance_is_known_and_stops_at_termination(
    store: Store,
) -> None:
    rid = _replica(store, 100.0)
    store.update_replica("svc", rid, now=110.0, status=S.PROVISIONING)
    assert store.billed_spans("svc")[0].billed_from is None  # no instance yet: no bill
    store.update_replica("svc", rid, now=130.0, status=S.STARTING, instance_id="i-1")
    store.update_replica("svc", rid, now=200.0, status=S.READY)
    store.update_replica("svc", rid, now=250.0, instance_id="i-1")  # not a new start
    (live,) = store.billed_spans("svc")
    assert (live.billed_from, live.billed_until) == (130.0, None)
    store.update_replica("svc", rid, now=400.0, status=S.SHUTTING_DOWN, reason=EndReason.USER)
    store.update_replica("svc", rid, now=430.0, status=S.TERMINATED, reason=EndReason.USER)
    (ended,) = store.billed_spans("svc")
    assert (ended.billed_from, ended.billed_until) == (130.0, 430.0)
    assert costs.accrued(ended, 10_000.0).cost == pytest.approx(300 * 0.9 / 3600)


def test_a_failed_launch_costs_nothing(store: Store) -> None:
    rid = _replica(store, 100.0)
    store.update_replica("svc", rid, now=110.0, status=S.PROVISIONING)
    store.update_replica(
        "svc", rid, now=120.0, status=S.TERMINATED, reason=EndReason.FAILED_PROVISION
    )
    assert costs.total(store.billed_spans("svc"), 0.0, 1000.0).cost == 0.0


def test_purged_and_deleted_replicas_keep_their_cost(store: Store) -> None:
    for start in (100.0, 200.0):
        rid = _replica(store, start)
        store.update_replica("svc", rid, now=start, status=S.PROVISIONING)
        store.update_replica("svc", rid, now=start, status=S.STARTING, instance_id=f"i-{rid}")
        store.update_replica("svc", rid, now=start + 50, interruption_at=start + 60)
        store.update_replica(
            "svc", rid, now=start + 60, status=S.TERMINATED, reason=EndReason.PREEMPTED
        )
    before = costs.total(store.billed_spans("svc"), 0.0, 10_000.0)
    assert store.purge_terminated("svc", before=250.0) == 1  # the first one goes
    assert store.list_replicas("svc", include_terminated=True)[0].replica_id == 2
    after = store.billed_spans("svc")
    assert [(s.replica_id, s.purged) for s in after] == [(2, False), (1, True)]
    assert after[1].had_notice and after[1].end_reason == "PREEMPTED"
    assert costs.total(after, 0.0, 10_000.0) == before
    assert store.purge_terminated("svc", before=250.0) == 0  # nothing kept twice
    store.delete_service("svc")
    assert costs.total(store.billed_spans("svc"), 0.0, 10_000.0) == before
    assert costs.total(store.billed_spans(), 0.0, 10_000.0) == before


def test_the_cached_sums_agree_with_the_spans_and_a_new_service_of_an_old_name_starts_at_zero(
    store: Store,
) -> None:
    for start in (100.0, 200.0, 300.0):
        rid = _replica(store, start)
        store.update_replica("svc", rid, now=start, status=S.PROVISIONING)
        store.update_replica("svc", rid, now=start, status=S.STARTING, instance_id=f"i-{rid}")
        if start < 300.0:
            store.update_replica(
                "svc", rid, now=start + 1000, status=S.TERMINATED, reason=EndReason.PREEMPTED
            )
    store.purge_terminated("svc", before=1150.0)  # one in the ledger, one ended, one live
    for now in (150.0, 1100.0, 5000.0):
        expect = costs.total(store.billed_spans("svc"), float("-inf"), now)
        got = store.cost_total("svc", now)
        assert (got.replicas, got.replica_seconds, got.cost, got.ondemand_cost) == pytest.approx(
            (expect.replicas, expect.replica_seconds, expect.cost, expect.ondemand_cost)
        )
        assert store.cost_series("svc", [now]) == [
            pytest.approx((expect.cost, expect.ondemand_cost))
        ]
    facts = store.cost_facts(5000.0)[("svc", str(A), "spot")]
    assert (facts.preemptions, facts.launches) == (2, 0)
    assert facts.cost == pytest.approx(store.cost_total("svc", 5000.0).cost)

    store.update_replica("svc", 3, now=5000.0, status=S.TERMINATED, reason=EndReason.USER)
    store.delete_service("svc")
    store.create_service("svc", "name: svc\n", now=6000.0)  # the same name, anew
    assert store.cost_total("svc", 7000.0, since=6000.0).cost == 0.0
    assert store.cost_series("svc", [7000.0], since=6000.0) == [(0.0, 0.0)]
    everything = store.cost_total("svc", 7000.0).cost  # the name's whole history, kept
    assert everything == pytest.approx(2 * 0.9 * 1000 / 3600 + 0.9 * 4700 / 3600)


# -- a spot service under the controller ----------------------------------------


async def test_a_spot_service_accrues_what_its_instances_ran_times_their_price(
    h: Harness,
) -> None:
    """Checked against the provider's side: when each instance was created and
    when it was preempted or terminated (within 1%)."""
    created: dict[str, float] = {}
    gone: dict[str, float] = {}
    launch, terminate = h.provider.launch, h.provider.terminate

    async def recording_launch(request):  # type: ignore[no-untyped-def]
        inst = await launch(request)
        created.setdefault(inst.instance_id, inst.created_at)
        return inst

    async def recording_terminate(instance_id: str) -> None:
        gone.setdefault(instance_id, h.clock.now())
        await terminate(instance_id)

    h.provider.launch = recording_launch  # type: ignore[method-assign]
    h.provider.terminate = recording_terminate  # type: ignore[method-assign]
    await h.controller.create_service(SPOT.format(name="spot", replicas=2), None)
    await h.until(lambda: h.ready("spot") == 2)
    await h.clock.advance(300)
    victim = h.replicas("spot")[0]
    assert victim.instance_id is not None
    gone[victim.instance_id] = h.clock.now()  # the cloud stops billing when it takes it
    await h.provider.preempt("spot", victim.replica_id)
    await h.until(lambda: h.ready("spot") == 2 and len(h.replicas("spot")) == 2)
    for _ in range(8):
        await h.clock.advance(60)
        await asyncio.sleep(0.01)
    now = h.clock.now()

    location = {
        r.instance_id: r.location for r in h.store.list_replicas("spot", include_terminated=True)
    }
    seconds = {iid: gone.get(iid, now) - t0 for iid, t0 in created.items()}
    expected_cost = sum(secs * SPOT_PRICES[location[iid]] / 3600 for iid, secs in seconds.items())
    expected_od = sum(seconds.values()) * ONDEMAND_PRICE / 3600
    assert len(created) >= 3  # two, then the replacement of the preempted one

    svc = h.controller.describe("spot")
    assert svc["replica_seconds"] == pytest.approx(sum(seconds.values()), rel=0.01)
    assert svc["accrued_cost"] == pytest.approx(expected_cost, rel=0.01)
    assert svc["ondemand_cost"] == pytest.approx(expected_od, rel=0.01)
    assert svc["savings"] == pytest.approx(expected_od - expected_cost, rel=0.01)
    # each figure is rounded to the micro-dollar, so the rows' sum may differ by one per row
    rows = svc["replicas"]
    assert sum(r["accrued_cost"] for r in rows) == pytest.approx(
        svc["accrued_cost"], abs=1e-6 * len(rows)
    )
    (ended,) = [r for r in svc["replicas"] if r["reason"] == "PREEMPTED"]
    assert ended["accrued_cost"] == pytest.approx(
        seconds[victim.instance_id] * SPOT_PRICES[victim.location] / 3600, rel=0.01
    )
    assert all(r["ondemand_price_per_hour"] == ONDEMAND_PRICE for r in svc["replicas"])


# -- the command line ------------------------------------------------------------


def test_serve_cost_reports_from_the_state_database_without_a_controller(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Store(home / "state.db") as s:
        s.create_service("svc", "name: svc\n", now=0.0)
        rid = _replica(s, 1000.0)
        s.update_replica("svc", rid, now=1000.0, status=S.PROVISIONING)
        s.update_replica("svc", rid, now=1000.0, status=S.STARTING, instance_id="i-1")
        s.update_replica("svc", rid, now=4600.0, status=S.TERMINATED, reason=EndReason.FAILED)
    out = run_cli(home, "serve", "cost", "svc", "-o", "json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["total"]["replica_seconds"] == pytest.approx(3600)
    assert rep["total"]["accrued_cost"] == pytest.approx(0.9)
    assert rep["by_cloud"]["aws"]["savings"] == pytest.approx(3.06 - 0.9)
    table = run_cli(home, "serve", "cost").stdout
    assert "total" in table and "us-east-1a" in table and "0.9000" in table
    recent = json.loads(run_cli(home, "serve", "cost", "--since", "1h", "-o", "json").stdout)
    assert recent["total"]["accrued_cost"] == 0.0  # that replica ran in 1970
    missing = run_cli(home, "serve", "cost", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr
    bad = run_cli(home, "serve", "cost", "--since", "soon")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since 'soon'" in bad.stderr


def test_purging_keeps_totals(store: Store) -> None:
    rid = _replica(store, 0.0)
    store.update_replica("svc", rid, now=0.0, status=S.PROVISIONING)
    store.update_replica("svc", rid, now=0.0, status=S.STARTING, instance_id="i-1")
    store.update_replica("svc", rid, now=3600.0, status=S.TERMINATED, reason=EndReason.USER)
    store.purge_terminated("svc", before=3600.0 + KEEP_TERMINATED_SECONDS + 1)
    assert costs.total(store.billed_spans("svc"), 0.0, 1e9).cost == pytest.approx(0.9)
