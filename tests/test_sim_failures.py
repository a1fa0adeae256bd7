"""``skyctl sim`` runs the controller's failure rules: no launch storm, FAILED as live.

Every shipped manifest with a service, replayed over whole bundled traces, makes
at most twice as many (granted) launches as the preemptions plus the target:
each preemption costs a replacement and perhaps an on-demand fallback, never a
loop. Launches refused for capacity are how a policy learns a zone is full:
no location is asked again before its hold (policies.capacity) ends. A cold
start longer than the spec's initial delay is warned about, and plays out as
it would live: FAILED_INITIAL_DELAY, backoff, the service FAILED.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli_sim import sim
from skyctl.sim.engine import DEFAULT_COLD_START, cold_start_warning, spec_cold_start
from skyctl.spec_yaml import load_spec_file
from tests.helpers import spot_launches

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted(ROOT.glob("manifests/*.yaml"))
TRACES = ("aws-v100-2023-02", "gcp-h100-2025-10")


def _run(args: list[str]) -> tuple[list[dict[str, object]], str]:
    res = CliRunner().invoke(sim, [*args, "-o", "json"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    return json.loads(out[out.index("[") :]), res.stderr


# Launch attempts (granted + refused) over 2x (preemptions + target), measured. Without a
# spare (skyserve-vllm) SpotHedge's granted launches alone come to ~2 per preemption (a
# replacement and an on-demand fallback, launched together), leaving next to nothing for
# the refusals by which a policy learns that a zone has no spot capacity (policies.capacity:
# per-location holds, one probe a plan, the search backing off as a whole). Attempts before
# the holds and now (which must not grow). spot-local-trace on GCP went from 94 to 67 (<= 80)
# when the spare started to cover a preemption on its own (no fallback launched besides).
# skyserve-vllm's granted launches alone are about 2 x preemptions (177 of 178 on AWS, 23 of
# 24 on GCP): within the limit with SpotHedge exact would take at most one refusal in all
# (the breakdown: docs/simulator-notes.md, "Where the attempts over the limit come from").
# Holds of up to 1 h (not 30 min) took AWS from 409 to 369 and 1,264 to 1,205. A spot ask
# the target does not need (the replicas there cover it: the ask is for the spare or to
# replace an on-demand fallback) held on past the hour, doubling to 8 h: 369 -> 350 and
# 1,205 -> 1,049 (refused 186 -> 173 and 598 -> 454). GCP's 13 refusals: 7 first asks of a
# zone, 6 asks of zones last heard of more than a day before. Holds at least as long as the
# location has been out so far (since its first refusal in a row; a needed ask's too where
# on-demand covers the wait): 350 -> 303 and 1,049 -> 798 (refused 173 -> 140 and 454 ->
# 289; limits 164 and 666, as preemptions fell too).
OVER_2X = {
    ("skyserve-vllm.yaml", "aws-v100-2023-02"): (873, 303),
    ("skyserve-vllm.yaml", "gcp-h100-2025-10"): (36, 36),
    ("spot-local-trace.yaml", "aws-v100-2023-02"): (3160, 798),
}


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_no_launch_storm_on_any_shipped_manifest(
    manifest: Path, trace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec_file(str(manifest))
    rp = spec.service.replica_policy
    target = rp.min_replicas + (rp.num_overprovision or 0)
    seen = spot_launches.watch(monkeypatch)
    (row,), err = _run([str(manifest), "--trace", trace])
    attempts, refused = int(row["launches"]), int(row["failed_launches"])  # type: ignore[call-overload]
    limit = 2 * (int(row["preemptions"]) + target)  # type: ignore[call-overload]
    assert attempts - refused <= limit, row
    assert row["failure"] == "" and "warning" not in err
    assert float(row["availability"]) > 0.95  # type: ignore[arg-type]

    assert spot_launches.refused(seen) == refused
    spot_launches.assert_holds_respected(seen)

    known = OVER_2X.get((manifest.name, trace))
    if attempts <= limit:
        assert known is None, f"{attempts} attempts <= {limit}: drop it from OVER_2X"
    else:
        assert known is not None, (
            f"{attempts} launch attempts > 2 x (preemptions + target) = {limit}"
        )
        before, measured = known
        assert attempts <= measured * 1.05, f"{attempts} attempts, up from {measured}"
        pytest.xfail(f"{attempts} attempts > {limit} (before the capacity holds: {before})")


def test_the_default_cold_start_is_the_specs_initial_delay_at_most_180s() -> None:
    local = load_spec_file(str(ROOT / "manifests/spot-local-trace.yaml"))
    vllm = load_spec_file(str(ROOT / "manifests/skyserve-vllm.yaml"))
    assert spec_cold_start(local) == 30.0
    assert spec_cold_start(vllm) == DEFAULT_COLD_START
    assert cold_start_warning(local, 30.0) == ""
    assert "initial_delay_seconds (30s)" in cold_start_warning(local, 180.0)


def test_a_cold_start_beyond_the_initial_delay_is_warned_about_and_fails_as_live() -> None:
    manifest = str(ROOT / "manifests/spot-local-trace.yaml")
    (row,), err = _run([manifest, "--trace", TRACES[0], "--cold-start", "180"])
    assert "warning: the cold start modelled (180" in err
    assert "service FAILED" in err and "FAILED_INITIAL_DELAY" in str(row["failure"])
    # three rounds of 4 replicas, then nothing: not the 491,130 launches of a storm
    granted = int(row["launches"]) - int(row["failed_launches"])  # type: ignore[call-overload]
    assert granted <= 12 and row["availability"] == 0.0
