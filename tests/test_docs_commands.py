"""What README.md and docs/**/*.md tell a reader to run exists, as spelled there.

Read mechanically from the docs: every ``skyctl ...`` invocation (code blocks and inline
code, usage forms like ``[-o json|--json]`` included) names commands and options the CLI
has, and the concrete ones parse with click; every ``python -m X`` module exists and every
``python path.py`` script too, with the flags the docs give it; every repository path the
docs name exists; every pip extra is in setup.cfg; every ``SKYCTL_*`` variable is read
somewhere. The other way round, every command and option ``skyctl --help`` shows is
named in docs/cli.md.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from skyctl.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INDENTED = re.compile(r"(?:^(?: {4}|\t)\S.*\n?)+", re.M)
SPAN = re.compile(r"(?<!`)`([^`]+?)`(?!`)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def snippets(path: Path) -> Iterator[tuple[str, str, bool]]:
    """(where, code, in a code block) for every code block line (``\\`` continuations
    joined) and every inline span."""
    text = path.read_text()
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("\n", text)
    blocks += [m.group(0) for m in INDENTED.finditer(prose)]
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            if line.strip() and not line.lstrip().startswith("```"):
                yield rel(path), line.strip(), True
    for paragraph in re.split(r"\n\s*\n", INDENTED.sub("\n", prose)):
        for m in SPAN.finditer(paragraph):
            yield rel(path), " ".join(m.group(1).split()), False


ALL_SNIPPETS = [s for doc in DOCS for s in snippets(doc)]

# ``skyctl serve up ...``, ``python3 -m skyctl serve ...``; and, inline, ``serve up ...``
INVOCATION = re.compile(
    r"(?:^|(?<=[\s\"'(]))(?:python3? -m )?skyctl "
    r"((?:serve|controller|router|sim|check|console|COMMAND|--)[^#;&)\"]*)"
)
BARE = re.compile(r"^((?:serve|controller|router) [a-z][a-z|\\]*\b.*)$")


def invocations() -> list[tuple[str, str, bool]]:
    """(where, the words after ``skyctl``, in a code block), cut at a shell pipe, comment
    or quote."""
    found = set()
    for where, code, block in ALL_SNIPPETS:
        if code.startswith(("error:", "warning:")):
            continue  # a quoted message: its commands are the CLI's own text
        texts = [m.group(1) for m in INVOCATION.finditer(code)]
        bare = BARE.match(code)
        if bare and not texts:
            texts.append(bare.group(1))
        for found_text in texts:
            words = re.split(r"\s\\?\|\s", found_text)[0].strip()
            found.add((where, words, block))
    return sorted(found)


def command_at(words: list[str]) -> tuple[list[click.Command], list[str]]:
    """The command(s) the leading words name (``run|start|stop`` names three), and the rest."""
    cmds: list[click.Command] = [cli]
    rest = list(words)
    while rest and all(isinstance(c, click.Group) for c in cmds):
        names = rest[0].replace("\\", "").split("|")
        if not all(re.fullmatch(r"[a-z][a-z-]*", n) for n in names):
            break
        groups = [c for c in cmds if isinstance(c, click.Group)]
        subs = [g.commands.get(n) for g in groups for n in names]
        assert all(subs), f"no command {rest[0]!r} under {' '.join(c.name or '' for c in cmds)}"
        cmds = [s for s in subs if s is not None]
        rest = rest[1:]
    return cmds, rest


def option_names(cmd: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in cmd.params:
        if isinstance(param, click.Option):
            names.update(param.opts, param.secondary_opts)
    return names


def mentioned_options(words: list[str]) -> list[str]:
    out = []
    for word in words:
        for piece in word.replace("\\", "").strip("[]{}.,").split("|"):
            piece = piece.strip("[]{}.,")
            if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", piece):
                out.append(piece.split("=")[0])
    return out


def is_concrete(words: str, block: bool) -> bool:
    """A command a reader can paste as it is: no placeholders, no alternatives; a code
    block's line, or an inline one with an argument (``serve up`` alone names the command)."""
    if re.search(r"[\[\]|<>]|\.\.\.|\b[A-Z][A-Z_]+\b|\$", words):
        return False
    try:
        cmds, rest = command_at(words.split())
    except AssertionError:
        return True  # an unknown command: the parse says so
    return block or (
        not isinstance(cmds[0], click.Group) and any(not w.startswith("-") for w in rest)
    )


INVOCATIONS = invocations()
DOC_IDS = [rel(d) for d in DOCS]


def test_the_docs_have_skyctl_invocations_to_check() -> None:
    assert len(INVOCATIONS) > 60
    assert len([i for i in INVOCATIONS if is_concrete(i[1], i[2])]) > 20


def unknown_options(words: str) -> str:
    """What is wrong with ``skyctl WORDS``'s command and options, or ""."""
    try:
        cmds, rest = command_at(words.split())
    except AssertionError as e:
        return str(e)
    known = set().union(*(option_names(c) for c in cmds))
    if cmds == [cli]:
        known |= {"--home", "--version"}
    unknown = [o for o in mentioned_options(rest) if o not in known]
    return f"no option {unknown} (has {sorted(known)})" if unknown else ""


@pytest.mark.parametrize("doc", DOC_IDS)
def test_every_skyctl_invocation_in_the_doc_names_existing_commands_and_options(
    doc: str,
) -> None:
    wrong = [(w, unknown_options(w)) for where, w, _ in INVOCATIONS if where == doc]
    wrong = [(w, why) for w, why in wrong if why]
    assert not wrong, "\n".join(f"{doc}: `skyctl {w}`: {why}" for w, why in wrong)


def pending(ctx: click.Context) -> list[str]:
    """A group's words left for its subcommand (click 8.2 renamed ``protected_args``)."""
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = ctx.protected_args
    return [*protected, *ctx.args]


def parse_error(words: list[str]) -> str:
    """click's complaint about ``skyctl WORDS``, callbacks included, or "" (nothing runs)."""
    try:
        ctx = cli.make_context("skyctl", list(words))
        cmd: click.Command = cli
        while isinstance(cmd, click.Group) and pending(ctx):
            name, sub, args = cmd.resolve_command(ctx, pending(ctx))
            assert sub is not None and name is not None
            ctx = sub.make_context(name, args, parent=ctx)
            cmd = sub
    except click.exceptions.Exit:
        return ""  # --help
    except click.ClickException as e:  # a usage error, or a callback's (--secret KEY unset)
        return e.format_message()
    return f"{cmd.name}: a group needs a command" if isinstance(cmd, click.Group) else ""


@pytest.mark.parametrize("doc", DOC_IDS)
def test_every_concrete_skyctl_invocation_in_the_doc_parses(
    doc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the docs' paths are the repository's
    monkeypatch.setenv("HF_TOKEN", "hf_example")  # `--secret HF_TOKEN` takes $HF_TOKEN
    concrete = [w for where, w, block in INVOCATIONS if where == doc and is_concrete(w, block)]
    wrong = [(w, parse_error(shlex.split(w))) for w in concrete]
    wrong = [(w, why) for w, why in wrong if why]
    assert not wrong, "\n".join(f"{doc}: `skyctl {w}`: {why}" for w, why in wrong)


def visible(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, list[str]]]:
    """(command path, its options) for every command and option --help shows."""
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        options = []
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                longs = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
                options.append((longs or param.opts)[0])
        yield " ".join((*path, name)), options
        if isinstance(cmd, click.Group):
            yield from visible(cmd, (*path, name))


HELP = dict(visible(cli))


def test_skyctls_own_options_are_in_docs_cli_md() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    for option in ("--home", "--version"):
        assert re.search(rf"`(skyctl )?{option}\b", doc), f"docs/cli.md: skyctl {option}"


@pytest.mark.parametrize("command", sorted(HELP))
def test_every_command_and_option_in_help_is_in_docs_cli_md(command: str) -> None:
    doc = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert f"skyctl {command}" in doc, f"docs/cli.md: no skyctl {command}"
    if not HELP[command]:
        return
    section = doc.split(f"### `skyctl {command}`")
    assert len(section) == 2, f"docs/cli.md: no section ### `skyctl {command}`"
    body = section[1].split("### ")[0]
    missing = [o for o in HELP[command] if not re.search(rf"`{re.escape(o)}\b", body)]
    assert not missing, f"docs/cli.md, skyctl {command}: options {missing} undocumented"


# -- python -m X, python path.py --------------------------------------------------------

MODULE = re.compile(r"\bpython3? -m ((?:benchmarks|skyctl|tools)(?:\.\w+)*)((?:\s+[^|;&#]*)?)")
SCRIPT = re.compile(r"\bpython3? ((?:benchmarks|tools)/[\w/]+\.py)((?:\s+[^|;&#]*)?)")


def python_runs() -> list[tuple[str, str, str]]:
    """(where, module or script path, its documented arguments)."""
    out = set()
    for where, code, _ in ALL_SNIPPETS:
        for m in MODULE.finditer(code):
            if m.group(1) != "skyctl":
                out.add((where, m.group(1), m.group(2).strip()))
        for m in SCRIPT.finditer(code):
            out.add((where, m.group(1), m.group(2).strip()))
    return sorted(out)


PYTHON_RUNS = python_runs()


def source_of(target: str) -> str:
    if target.endswith(".py"):
        path = ROOT / target
        assert path.is_file(), f"no file {target}"
        return path.read_text()
    spec = importlib.util.find_spec(target)
    assert spec is not None and spec.origin, f"no module {target}"
    origin = Path(spec.origin)
    files = sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]
    return "\n".join(f.read_text() for f in files)


def test_the_docs_have_python_runs_to_check() -> None:
    assert len(PYTHON_RUNS) > 20


def run_error(target: str, args: str) -> str:
    try:
        source = source_of(target)
    except AssertionError as e:
        return str(e)
    flags = mentioned_options(args.split())
    missing = [f for f in flags if f'"{f}"' not in source and f"'{f}'" not in source]
    return f"{target} has no {missing}" if missing else ""


@pytest.mark.parametrize("doc", DOC_IDS)
def test_every_python_run_in_the_doc_exists_with_its_flags(doc: str) -> None:
    wrong = [(t, a, run_error(t, a)) for where, t, a in PYTHON_RUNS if where == doc]
    wrong = [w for w in wrong if w[2]]
    assert not wrong, "\n".join(f"{doc}: `python -m {t} {a}`: {why}" for t, a, why in wrong)


PYTEST = re.compile(r"\bpython3? -m pytest ([^|;&#`]*)")


def pytest_selections() -> list[tuple[str, str, str]]:
    """(where, test files, the ``-k`` word) of every ``python -m pytest FILES -k WORD``."""
    out = set()
    for where, code, _ in ALL_SNIPPETS:
        for m in PYTEST.finditer(code):
            words = m.group(1).split()
            files = " ".join(w for w in words if w.startswith("tests/"))
            if "-k" in words and files:
                out.add((where, files, words[words.index("-k") + 1]))
    return sorted(out)


@pytest.mark.parametrize(("where", "files", "word"), pytest_selections(), ids=str)
def test_documented_pytest_selection_selects_a_test(where: str, files: str, word: str) -> None:
    names = [
        n for f in files.split() for n in re.findall(r"def (test_\w+)", (ROOT / f).read_text())
    ]
    assert any(word in n for n in names), f"{where}: -k {word} selects no test in {files}"


# -- paths, extras, variables -------------------------------------------------------------

PATH = re.compile(
    r"(?<![\w/.~-])((?:manifests|docs|tests|benchmarks|tools|skyctl|providers|policies|\.ci)/"
    r"[\w./{},-]*[\w}])"
)


def named_paths() -> list[tuple[str, str]]:
    """(where, path) for every repository path a doc names (``{a,b}`` expanded), except
    SkyPilot's own (``SkyPilot's tests/skyserve/``, ``sky serve up tests/...``)."""
    out = set()
    for doc in DOCS:
        text = doc.read_text()
        for m in PATH.finditer(text):
            before = text[max(0, m.start() - 40) : m.start()]
            if "SkyPilot's" in before or "sky serve" in before:
                continue
            path = m.group(1)
            if re.search(r"/[A-Z]\.|\.\.\.", path):
                continue  # a placeholder (manifests/X.yaml)
            brace = re.search(r"\{([^}]*)\}", path)
            choices = brace.group(1).split(",") if brace else [""]
            for choice in choices:
                out.add((rel(doc), re.sub(r"\{[^}]*\}", choice, path, count=1)))
    return sorted(out)


NAMED_PATHS = named_paths()


def exists(path: str) -> bool:
    candidates = [path, path + ".py", path.replace(".", "/") + ".py"]
    if "." in path.rsplit("/", 1)[-1]:  # providers/local_records.LogPruner: a module's name
        candidates.append(path.rsplit(".", 1)[0] + ".py")
    return any((ROOT / c).exists() for c in candidates)


@pytest.mark.parametrize("doc", DOC_IDS)
def test_every_repository_path_the_doc_names_exists(doc: str) -> None:
    missing = [p for where, p in NAMED_PATHS if where == doc and not exists(p)]
    assert not missing, f"{doc}: {missing} do not exist"


def extras() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return set(cfg["options.extras_require"])


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_pip_extra_the_doc_names_is_in_setup_cfg(doc: Path) -> None:
    named = re.findall(r"(?:(?<=['\"\s])\.|skyctl)\[([a-z][\w,\s-]*)\]", doc.read_text())
    missing = {e.strip() for group in named for e in group.split(",")} - extras()
    assert not missing, f"{rel(doc)}: extras {sorted(missing)} not in setup.cfg"


def code_text() -> str:
    roots = ["skyctl", "providers", "policies", "benchmarks", "tools", "tests", "manifests"]
    files = [f for r in roots for f in (ROOT / r).rglob("*") if f.suffix in {".py", ".yaml", ".sh"}]
    files += [ROOT / "setup.py", ROOT / "Dockerfile"]
    return "\n".join(f.read_text(errors="replace") for f in files if f.is_file())


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_skyctl_variable_the_doc_names_is_read_somewhere(doc: Path) -> None:
    named = set(re.findall(r"\bSKYCTL_[A-Z][A-Z0-9_]*[A-Z0-9]\b", doc.read_text()))
    code = code_text()
    missing = sorted(v for v in named if v not in code)
    assert not missing, f"{rel(doc)}: no code reads {missing}"


# -- docs/spec.md's keys ------------------------------------------------------------------

SPEC_SECTIONS = {  # a heading of docs/spec.md -> where its table's keys sit in a spec
    "## Top level": (),
    "## `service`": ("service",),
    "### `service.router` (ours)": ("service", "router"),
    "#### `service.router.cache_aware` (ours)": ("service", "router", "cache_aware"),
    "### `service.auth` (ours)": ("service", "auth"),
    "## `local` (ours): the local provider": ("local",),
}


def spec_keys() -> list[tuple[tuple[str, ...], str]]:
    """(where, key) for every key in docs/spec.md's key tables, and resources' list."""
    text = (ROOT / "docs" / "spec.md").read_text()
    out = []
    for heading, where in SPEC_SECTIONS.items():
        assert heading in text, f"docs/spec.md has no heading {heading!r}"
        body = re.split(r"\n#{1,4} ", text.split(heading + "\n", 1)[1])[0]
        for key in re.findall(r"^\| `([a-z_.]+)` \|", body, re.M):
            out.append((where, key))
    resources = text.split("## `resources`\n", 1)[1].split("\n- ")[0]
    out += [(("resources",), k) for k in re.findall(r"`([a-z_]+)`", resources)]
    return out


def unknown_key_error(where: tuple[str, ...], key: str) -> str:
    """The loader's message for a spec with ``key`` under ``where`` ("" if it took it)."""
    from skyctl.errors import SpecError
    from skyctl.spec_yaml import parse_spec

    spec: dict[str, object] = {"name": "docs", "run": "true", "service": {"replicas": 1}}
    node = spec
    for part in (*where, *key.split(".")[:-1]):
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[key.split(".")[-1]] = "x"
    try:
        parse_spec(yaml.safe_dump(spec), "docs.yaml")
    except SpecError as e:
        return str(e) if "unknown key" in str(e) else ""
    return ""


SPEC_KEYS = spec_keys()


def test_docs_spec_md_has_keys_to_check_and_the_loader_refuses_an_unknown_one() -> None:
    assert len(SPEC_KEYS) > 60
    for where in {*SPEC_SECTIONS.values(), ("resources",)}:
        assert unknown_key_error(where, "no_such_key"), where


def test_every_key_docs_spec_md_documents_is_a_key_the_loader_takes() -> None:
    wrong = [unknown_key_error(where, key) for where, key in SPEC_KEYS]
    wrong = [w for w in wrong if w]
    assert not wrong, "docs/spec.md documents keys the loader refuses:\n" + "\n".join(wrong)


# -- config.yaml sections the cloud docs show -----------------------------------------------


def config_keys() -> dict[str, tuple[str, ...]]:
    from providers import aws_config, azure_config, gcp_config, kubernetes_config
    from providers.simulated import SimulatedOptions

    return {
        "simulated": tuple(SimulatedOptions.__dataclass_fields__),
        "aws": tuple(aws_config.CONFIG_KEYS),
        "gcp": tuple(gcp_config.CONFIG_KEYS),
        "azure": tuple(azure_config.KEYS),
        "kubernetes": tuple(kubernetes_config.CONFIG_KEYS),
    }


CLOUD_DOCS = {
    "simulated": "docs/clouds.md",
    "aws": "docs/clouds/aws.md",
    "gcp": "docs/clouds/gcp.md",
    "azure": "docs/clouds/azure.md",
    "kubernetes": "docs/kubernetes.md",
}


@pytest.mark.parametrize(
    "doc", [ROOT / "docs" / "clouds.md", *(ROOT / d for d in CLOUD_DOCS.values())], ids=rel
)
def test_every_config_yaml_key_the_cloud_docs_show_is_one_the_provider_takes(doc: Path) -> None:
    keys = config_keys()
    shown = 0
    for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
        for section, body in (yaml.safe_load(block) or {}).items():
            if section in keys and isinstance(body, dict):
                unknown = set(body) - set(keys[section])
                assert not unknown, f"{rel(doc)}: {section}: no key {sorted(unknown)}"
                shown += 1
    assert shown, f"{rel(doc)} shows no config.yaml section"


@pytest.mark.parametrize("cloud", sorted(CLOUD_DOCS))
def test_every_config_yaml_key_a_provider_takes_is_in_its_doc(cloud: str) -> None:
    text = (ROOT / CLOUD_DOCS[cloud]).read_text()
    missing = [k for k in config_keys()[cloud] if not re.search(rf"\b{k}\b", text)]
    assert not missing, f"{CLOUD_DOCS[cloud]}: {cloud} keys {missing} undocumented"


# -- the examples --help shows --------------------------------------------------------------


def help_examples() -> list[tuple[str, str]]:
    """(command, the words after ``skyctl``) of every ``skyctl ...`` line of the epilogs."""
    out = []

    def walk(cmd: click.Command, path: str) -> None:
        for line in (cmd.epilog or "").splitlines():
            m = INVOCATION.search(line.split("#")[0])
            if m and not line.strip().startswith("curl"):
                out.append((path, re.split(r"\s\|\s", m.group(1))[0].strip()))
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}".strip())

    walk(cli, "")
    return out


def test_every_example_in_help_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_TOKEN", "hf_example")
    examples = help_examples()
    assert len(examples) > 20
    wrong = [(c, w, unknown_options(w) or parse_error(shlex.split(w))) for c, w in examples]
    wrong = [x for x in wrong if x[2]]
    assert not wrong, "\n".join(f"skyctl {c} --help: `skyctl {w}`: {why}" for c, w, why in wrong)


def test_every_documented_script_answers_help_without_running() -> None:
    """``python benchmarks/X.py --help`` prints its usage (it ran the 1.5-minute
    benchmarks/policies.py, and was a traceback for benchmarks/console_load.py)."""
    scripts = sorted({t for _, t, _ in PYTHON_RUNS if t.endswith(".py")})
    assert len(scripts) >= 5
    for script in scripts:
        done = subprocess.run(
            [sys.executable, script, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "usage:" in done.stdout, (script, done.stderr[-500:])


# -- links between the docs -----------------------------------------------------------------


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the doc's headings (``## `local` (ours)`` -> ``local-ours``)."""
    text = FENCE.sub("", doc.read_text())
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = sum(1 for a in out if a == slug or re.fullmatch(rf"{re.escape(slug)}-\d+", a))
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_link_in_the_doc_reaches_a_file_and_heading(doc: Path) -> None:
    text = SPAN.sub("", FENCE.sub("", doc.read_text()))
    wrong = []
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):
            continue  # https://...
        path, _, anchor = link.partition("#")
        target = (doc.parent / path) if path else doc
        if not target.exists():
            wrong.append(f"{link}: no file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            wrong.append(f"{link}: no heading #{anchor} in {rel(target)}")
    assert not wrong, f"{rel(doc)}: {wrong}"
