"""A relative ``workdir`` is read as SkyPilot reads it: from where the command runs.

SkyPilot's docs (reference/yaml-spec): "If a relative path is used, it's
evaluated relative to the location from which ``sky`` is called", so its
smoke tests run ``sky serve up tests/skyserve/http/aws.yaml`` from the
repository root with ``workdir: examples/serve/http_server``. skyctl reads it
so, and where that is no directory, relative to the spec file (its earlier
rule). The spec submitted says the absolute path, since the controller runs
elsewhere.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

from skyctl.errors import SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_files import anchor_workdir
from skyctl.spec_yaml import parse_spec
from tests.helpers.cli import run_cli
from tests.helpers.processes import pids_mentioning

TEXT = """\
service:
  readiness_probe: /
  replicas: 1
workdir: {workdir}   # the server's folder
run: python3 server.py
"""


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(where the command runs, the spec file): a checkout with the spec under tests/."""
    root = tmp_path / "checkout"
    (root / "examples" / "app").mkdir(parents=True)
    (root / "tests" / "specs").mkdir(parents=True)
    return root, root / "tests" / "specs" / "svc.yaml"


def spec_at(path: Path, workdir: str) -> ServiceSpec:
    return parse_spec(TEXT.format(workdir=workdir), source=str(path))


def test_a_relative_workdir_is_relative_to_where_the_command_runs(
    layout: tuple[Path, Path],
) -> None:
    root, spec_file = layout
    anchored = anchor_workdir(spec_at(spec_file, "examples/app"), cwd=str(root))
    assert anchored.workdir == str(root / "examples" / "app")
    lines = anchored.yaml_text.splitlines()
    assert (
        lines[3] == f"workdir: {json.dumps(str(root / 'examples' / 'app'))}   # the server's folder"
    )
    others = TEXT.format(workdir="x").splitlines()
    assert lines[:3] + lines[4:] == [*others[:3], others[4]]  # nothing else changed
    again = parse_spec(anchored.yaml_text, source=str(spec_file))
    assert again.workdir == anchored.workdir  # the text the controller stores reads the same


def test_else_it_is_relative_to_the_spec_file(layout: tuple[Path, Path], tmp_path: Path) -> None:
    _, spec_file = layout
    (spec_file.parent / "app").mkdir()
    anchored = anchor_workdir(spec_at(spec_file, "app"), cwd=str(tmp_path))
    assert anchored.workdir == str(spec_file.parent / "app")


def test_where_both_exist_the_commands_directory_wins(layout: tuple[Path, Path]) -> None:
    root, spec_file = layout
    (spec_file.parent / "examples" / "app").mkdir(parents=True)
    anchored = anchor_workdir(spec_at(spec_file, "examples/app"), cwd=str(root))
    assert anchored.workdir == str(root / "examples" / "app")


def test_an_absolute_workdir_is_kept_as_written(layout: tuple[Path, Path]) -> None:
    root, spec_file = layout
    spec = spec_at(spec_file, str(root / "examples" / "app"))
    assert anchor_workdir(spec, cwd="/") is spec


def test_neither_is_a_directory_refused_in_one_line_naming_both(
    layout: tuple[Path, Path], tmp_path: Path
) -> None:
    root, spec_file = layout
    with pytest.raises(SpecError) as refused:
        anchor_workdir(spec_at(spec_file, "nowhere"), cwd=str(root))
    assert str(refused.value) == (
        f"{spec_file}:4: workdir: nowhere: not a directory ({root}/nowhere nor "
        f"{spec_file.parent}/nowhere; a relative path is relative to the directory skyctl "
        "runs in, as in SkyPilot, or else to the spec file)"
    )


SERVER = """\
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.getcwd().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.mark.timeout(150)
def test_serve_up_from_the_checkout_runs_the_replica_in_the_workdir_it_names(
    layout: tuple[Path, Path], skyctl_home: Path
) -> None:
    root, spec_file = layout
    (root / "examples" / "app" / "server.py").write_text(SERVER)
    spec_file.write_text(TEXT.format(workdir="examples/app").replace("python3", sys.executable))
    up = run_cli(skyctl_home, "serve", "up", "tests/specs/svc.yaml", "-n", "app", cwd=root)
    assert up.returncode == 0, up.stdout + up.stderr
    (service,) = json.loads(run_cli(skyctl_home, "serve", "status", "--json").stdout)
    with urllib.request.urlopen(service["endpoint"] + "/", timeout=10) as reply:
        assert reply.read().decode() == str(root / "examples" / "app")
    down = run_cli(skyctl_home, "serve", "down", "app")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pids_mentioning(str(skyctl_home / "local"))


def test_what_replicas_will_not_get_as_the_spec_asks_each_gets_a_note(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from skyctl.cli import cli
    from skyctl.spec_files import spec_notes

    mounts = "".join(f"  /m{i}: s3://bucket/{i}\n" for i in range(6))
    spec = parse_spec(
        "workdir: {url: 'https://github.com/x/y', ref: main}\n"
        f"file_mounts:\n{mounts}volumes:\n  /mnt/v: myvol\n"
        "service: {readiness_probe: /}\nrun: serve\n"
    )
    assert spec_notes(spec) == [
        "file_mounts is kept but not mounted by skyctl: replicas will not find /m0, /m1, /m2, "
        "/m3 and 2 more (fetch them in setup:, or put local files in workdir:)",
        "volumes is kept but not attached by skyctl: replicas will not find /mnt/v "
        "(fetch them in setup:, or put local files in workdir:)",
        "workdir: the git repository https://github.com/x/y is kept but not cloned: replicas "
        "run in a fresh directory of their own (clone it in setup:)",
    ]
    assert spec_notes(parse_spec("service: {readiness_probe: /}\nrun: serve\n")) == []
    local_image = "resources: {image_id: 'docker:img:1'}\nservice: {readiness_probe: /}\nrun: x\n"
    assert spec_notes(parse_spec(local_image)) == [
        "resources.image_id docker:img:1: a replica placed on local runs in this machine's "
        "environment, not in the image (kubernetes runs the image)"
    ]
    on_k8s = local_image.replace("{image_id", "{infra: k8s, image_id")
    assert spec_notes(parse_spec(on_k8s)) == []
    no_delay = "service: {readiness_probe: {path: /, initial_delay_seconds: 0}}\nrun: x\n"
    (note,) = spec_notes(parse_spec(no_delay))
    assert note.startswith("service.readiness_probe.initial_delay_seconds is 0: a replica")
    assert spec_notes(parse_spec(no_delay.replace("seconds: 0", "seconds: 1"))) == []
    unused = "service: {readiness_probe: /, router: {cache_aware: {ttl_seconds: 60}}}\nrun: x\n"
    assert spec_notes(parse_spec(unused)) == [
        "service.router.cache_aware is not used: load_balancing_policy is least_load "
        "(set it to cache_aware to route by prompt prefix)"
    ]
    used = unused.replace("service: {", "service: {load_balancing_policy: cache_aware, ")
    assert spec_notes(parse_spec(used)) == []
    odd = parse_spec(
        'file_mounts: {"/a\\nb": x, "/%s": y}\nservice: {readiness_probe: /}\nrun: serve\n'
        % ("d" * 200)
    )
    (note,) = spec_notes(odd)  # one line, whatever the paths hold
    assert "'/a\\nb'" in note and "/" + "d" * 76 + "..." in note and "\n" not in note

    file = tmp_path / "s.yaml"
    file.write_text("file_mounts: {/data: ./d}\nservice: {readiness_probe: /}\nrun: serve\n")
    noted = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "serve", "validate", str(file)])
    assert noted.exit_code == 0, noted.output
    assert noted.stderr == (
        "note: file_mounts is kept but not mounted by skyctl: replicas will not find /data "
        "(fetch them in setup:, or put local files in workdir:)\n"
    )
