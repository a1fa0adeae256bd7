"""``skyctl sim`` on hostile and malformed traces: one line naming the file, exit 2.

Empty folders and files, headers alone, values other than 0/1 (NaN, inf, text,
counts above the node count), unsorted or duplicate dates, holes, zones or
prices of mismatched lengths, missing metadata, a 2 GB file, ``/dev/zero``,
symlink loops, archives that would unpack to more than a trace may hold:
each gives ``error: trace FILE[:LINE]: what is wrong; what is allowed`` on one
line, exit status 2 (docs/cli.md), read within bounded time and memory
(skyctl/trace_files.py), never a traceback or figures from a wrong reading.
The Python API (``load_trace``) refuses each with the same ConfigError.
"""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli_sim import sim
from skyctl.errors import ConfigError
from skyctl.trace_files import MAX_ENTRIES, MAX_FILE_BYTES
from skyctl.traces import load_trace
from tests.helpers import trace_gen as gen

ROOT = Path(__file__).resolve().parent.parent
VLLM = str(ROOT / "manifests/skyserve-vllm.yaml")
OK_CSV = gen.OK_CSV
aws = gen.aws_raw


GCP_META = {
    "gap_seconds": 600,
    "start_time": "2025-10-04T00:10:00+00:00",
    "price_info": {"price": 1.0, "on_demand_price": 4.0},
}


def gcp(root: Path, **docs: object) -> Path:
    (root / "zones").mkdir(parents=True)
    for zone, doc in docs.items():
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (root / "zones" / f"{zone.replace('_', '-')}.json").write_text(text)
    return root


def counts(root: Path, data: object, meta: object = None) -> Path:
    root.mkdir(parents=True)
    doc = {"metadata": {"gap_seconds": 300} if meta is None else meta, "data": data}
    (root / "us-east-1a_v100_1.json").write_text(json.dumps(doc))
    (root / "trace.json").write_text('{"ondemand_price": 3.06}')
    return root


def big_csv(root: Path) -> Path:
    folder = aws(root, OK_CSV)
    with open(folder / "availability" / "us-east-1a_v100_1.csv", "ab") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB on paper, nothing on disk
    return folder


def dev_zero_csv(root: Path) -> Path:
    folder = aws(root, OK_CSV)
    (folder / "availability" / "us-east-1a_v100_1.csv").unlink()
    os.symlink("/dev/zero", folder / "availability" / "us-east-1a_v100_1.csv")
    return folder


def symlink_loop(root: Path) -> Path:
    root.mkdir()
    os.symlink(root / "b", root / "a")
    os.symlink(root / "a", root / "b")
    return root / "a"


def a_file(root: Path) -> Path:
    root.mkdir()
    (root / "notes.txt").write_text("hello\n")
    return root / "notes.txt"


def unknown(root: Path) -> Path:
    root.mkdir()
    (root / "data.parquet").write_bytes(b"PAR1")
    return root


Build = Callable[[Path], Path]
CSV = "availability/us-east-1a_v100_1.csv"
HOSTILE: list[tuple[str, Build, str]] = [
    ("empty folder", lambda r: r.mkdir() or r, "no trace data; expected availability/"),
    ("empty csv", lambda r: aws(r, ""), f"{CSV}: empty; expected a header 'date,availability'"),
    ("header only", lambda r: aws(r, "date,availability\n"), f"{CSV}: no rows after the header"),
    ("wrong header", lambda r: aws(r, "when,up\n2023-01-01,1\n"), f"{CSV}:1: header 'when,up'"),
    ("short row", lambda r: aws(r, "date,availability\n2023-01-01\n"), f"{CSV}:2:"),
    (
        "non-numeric",
        lambda r: aws(r, OK_CSV.replace(",0\n", ",yes\n")),
        f"{CSV}:3: availability 'yes': must be 0 or 1 (1 = available)",
    ),
    ("NaN", lambda r: aws(r, OK_CSV.replace(",0\n", ",nan\n")), f"{CSV}:3: availability 'nan'"),
    ("inf", lambda r: aws(r, OK_CSV.replace(",0\n", ",inf\n")), f"{CSV}:3: availability 'inf'"),
    ("a 2", lambda r: aws(r, OK_CSV.replace(",0\n", ",2\n")), f"{CSV}:3: availability '2'"),
    (
        "bad date",
        lambda r: aws(r, OK_CSV.replace("00:05:00", "soon")),
        f"{CSV}:3: date '2023-01-01 soon'",
    ),
    (
        "unsorted",
        lambda r: aws(r, OK_CSV.replace("00:05:00", "00:15:00")),
        f"{CSV}:4: date '2023-01-01 00:10:00' is not after the row before",
    ),
    ("duplicate date", lambda r: aws(r, OK_CSV.replace("00:05:00", "00:00:00")), "no duplicates"),
    (
        "a hole",
        lambda r: aws(r, OK_CSV + "2023-01-01 09:10:00,1\n2023-01-01 09:15:00,1\n"),
        f"{CSV}:5: date '2023-01-01 09:10:00' comes 32,400 s after the row before, ticks are 300 s",
    ),
    ("not utf-8", lambda r: aws(r, b"\xff\xfe\x00date"), f"{CSV}: not UTF-8 text"),
    (
        "zones of unequal length",
        lambda r: aws(r, OK_CSV, other=OK_CSV + "2023-01-01 00:15:00,1\n"),
        "us-east-1b_v100_1.csv: 4 rows from 2023-01-01 00:00:00, but us-east-1a_v100_1.csv has 3",
    ),
    (
        "prices misaligned",
        lambda r: aws(r, OK_CSV, prices='{"us-east-1a_v100_1": [1, 2]}'),
        "spot_prices.json: us-east-1a_v100_1: 2 prices, but us-east-1a_v100_1.csv has 3 rows",
    ),
    (
        "prices NaN",
        lambda r: aws(r, OK_CSV, prices='{"us-east-1a_v100_1": [1, NaN, 2]}'),
        "spot_prices.json: NaN is not a number",
    ),
    (
        "prices negative",
        lambda r: aws(r, OK_CSV, prices='{"us-east-1a_v100_1": [1, -2, 2]}'),
        "spot_prices.json: us-east-1a_v100_1[1] -2: must be a finite price >= 0",
    ),
    (
        "prices for no zone",
        lambda r: aws(r, OK_CSV, prices='{"us-east-9z_v100_1": [1, 1, 1]}'),
        "spot_prices.json: key 'us-east-9z_v100_1' names no availability/*.csv",
    ),
    (
        "prices not JSON",
        lambda r: aws(r, OK_CSV, prices='{"us-east'),
        "spot_prices.json:1: not JSON",
    ),
    (
        "trace.json list",
        lambda r: aws(r, OK_CSV, trace_json="[1]"),
        "trace.json: expected an object",
    ),
    (
        "trace.json typo",
        lambda r: aws(r, OK_CSV, trace_json='{"ondemand": 3}'),
        "trace.json: unknown key 'ondemand'; allowed: ondemand_price",
    ),
    (
        "trace.json inf",
        lambda r: aws(r, OK_CSV, trace_json='{"ondemand_price": Infinity}'),
        "trace.json: Infinity is not a number",
    ),
    (
        "trace.json gap 0",
        lambda r: aws(r, OK_CSV, trace_json='{"ondemand_price": 3, "gap_seconds": 0}'),
        "trace.json: gap_seconds 0: must be a finite number > 0",
    ),
    ("no on-demand price", lambda r: aws(r, OK_CSV, trace_json="{}"), "carries no on-demand price"),
    (
        "gcp no metadata",
        lambda r: gcp(r, us_central1_a={"data": [0, 1]}),
        "zones/us-central1-a.json: no metadata.gap_seconds",
    ),
    (
        "gcp data missing",
        lambda r: gcp(r, us_central1_a={"metadata": GCP_META}),
        'zones/us-central1-a.json: expected {"metadata": {...}, "data"',
    ),
    (
        "gcp empty data",
        lambda r: gcp(r, us_central1_a={"metadata": GCP_META, "data": []}),
        "zones/us-central1-a.json: no ticks",
    ),
    (
        "gcp a 2",
        lambda r: gcp(r, us_central1_a={"metadata": GCP_META, "data": [0, 2]}),
        "zones/us-central1-a.json: data[1] 2: must be 0 or 1 (GCP: 1 = preempted",
    ),
    (
        "gcp null",
        lambda r: gcp(r, us_central1_a={"metadata": GCP_META, "data": [None]}),
        "data[0] None: must be 0 or 1",
    ),
    (
        "gcp unequal",
        lambda r: gcp(
            r,
            us_central1_a={"metadata": GCP_META, "data": [0, 1]},
            us_central1_b={"metadata": GCP_META, "data": [0, 1, 1]},
        ),
        "zones/us-central1-b.json: 3 ticks of 600 s",
    ),
    (
        "gcp price",
        lambda r: gcp(
            r,
            us_central1_a={
                "metadata": {**GCP_META, "price_info": {"price": "cheap", "on_demand_price": 4}},
                "data": [0],
            },
        ),
        "metadata.price_info.price 'cheap': must be a finite number >= 0",
    ),
    (
        "gcp zone with a slash",
        lambda r: gcp(r, us_central1_a={"metadata": {**GCP_META, "zone": "us/a"}, "data": [0]}),
        "metadata.zone 'us/a': expected a zone, a name of 1 to 128 characters without '/'",
    ),
    (
        "no zone in the file name",
        lambda r: aws(r, OK_CSV, name="_v100_1.csv"),
        "_v100_1.csv: the file name '': expected <zone>_<type>.csv",
    ),
    (
        "gcp deep JSON",
        lambda r: gcp(r, us_central1_a="[" * 100_000 + "]" * 100_000),
        "zones/us-central1-a.json: JSON nested too deeply",
    ),
    (
        "counts above nodes",
        lambda r: counts(r, [1, 9], {"gap_seconds": 300, "nodes": 4}),
        "us-east-1a_v100_1.json: data[1] 9: must be a whole count from 0 to the node count, 4",
    ),
    (
        "counts above the folder's nodes",
        lambda r: counts(r / "4-nodes", [1, 5]) and r / "4-nodes",
        "data[1] 5: must be a whole count from 0 to the node count, 4",
    ),
    ("counts negative", lambda r: counts(r, [1, -1]), "data[1] -1: must be a whole count"),
    ("counts fraction", lambda r: counts(r, [1, 2.5]), "data[1] 2.5: must be a whole count"),
    (
        "counts no gap",
        lambda r: counts(r, [1], {}),
        "us-east-1a_v100_1.json: no metadata.gap_seconds",
    ),
    (
        "2 GB file",
        big_csv,
        f"{CSV}: 2,048 MiB; a trace file is at most {MAX_FILE_BYTES // 2**20} MiB",
    ),
    ("/dev/zero as a csv", dev_zero_csv, f"{CSV}: not a regular file"),
    ("/dev/zero", lambda r: Path("/dev/zero"), "trace /dev/zero: not a folder or a regular file"),
    ("symlink loop", symlink_loop, "a symlink loop"),
    ("a text file", a_file, "notes.txt: not a folder, a tar archive or a zip archive"),
    ("unknown format", unknown, "no trace data; expected availability/<zone>_<type>.csv"),
]


@pytest.mark.parametrize("build,message", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_trace_is_one_line_naming_the_file_and_what_is_allowed(
    build: Build, message: str, tmp_path: Path
) -> None:
    path = build(tmp_path / "t")
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(path), "-o", "json"])
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert message in res.stderr
    with pytest.raises(ConfigError):  # the Python API refuses it alike
        load_trace(str(path))


# ---------------------------------------------------------------- archives and folders


def zip_bomb(root: Path) -> Path:
    root.mkdir()
    with zipfile.ZipFile(root / "t.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("t/trace.json", '{"ondemand_price": 3}')
        zf.writestr("t/availability/us-east-1a_x.csv", OK_CSV + "0" * (MAX_FILE_BYTES + 1))
    return root / "t.zip"


def truncated_tar(root: Path) -> Path:
    whole = gen.tar_of(aws(root / "t", OK_CSV), root / "t.tar.gz").read_bytes()
    (root / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    return root / "cut.tar.gz"


def tar_symlink_member(root: Path) -> Path:
    root.mkdir()
    with tarfile.open(root / "t.tar", "w") as tf:
        link = tarfile.TarInfo("t/availability/us-east-1a_x.csv")
        link.type, link.linkname = tarfile.SYMTYPE, "/dev/zero"
        tf.addfile(link)
    return root / "t.tar"


@pytest.mark.parametrize(
    "build,message",
    [
        (zip_bomb, "t.zip:t/availability/us-east-1a_x.csv: a member of 67,108,"),
        (truncated_tar, "cut.tar.gz: a damaged archive"),
        (tar_symlink_member, "t.tar: no trace data"),
    ],
    ids=["zip bomb", "truncated tar", "symlink member"],
)
def test_a_hostile_archive_is_refused_without_unpacking_it(
    build: Build, message: str, tmp_path: Path
) -> None:
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(build(tmp_path / "a")), "-o", "json"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert message in res.stderr


def test_a_folder_of_too_many_files_is_refused_without_walking_it_all(tmp_path: Path) -> None:
    crowd = tmp_path / "crowd"
    crowd.mkdir()
    for i in range(MAX_ENTRIES + 1):
        (crowd / f"{i}.txt").touch()
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(crowd)])
    assert res.exit_code == 2
    assert f"more than {MAX_ENTRIES:,} files and folders; point --trace at the trace's" in (
        res.output
    )


def test_more_zones_than_a_replay_holds_are_refused(tmp_path: Path) -> None:
    from skyctl.trace_formats import MAX_ZONES

    avail = gen.pattern("all", gen.zone_names(MAX_ZONES + 1, gcp=True), 2)
    folder = gen.write_gcp(tmp_path / "g", avail)
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(folder)])
    assert res.exit_code == 2
    assert f"zones: {MAX_ZONES + 1} zone files; at most {MAX_ZONES}" in res.output
