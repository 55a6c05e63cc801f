"""Every `snakemake`, `kxl` and `make` command the docs show is checked (issue 19), so a
documented command cannot rot.

Collected: lines of fenced sh/bash/plain blocks and inline code spans in README.md and docs/*.md;
in the comments of config/*.yaml and profiles/*/profile.yaml, command lines (`#   snakemake ...`,
two or more spaces after the `#`, `\\` continues on the next comment line) and code spans.
How each is checked, in a copy of the checkout:
- snakemake: a dry run (`-n` appended); with `--workflow-profile profiles/slurm` too, since a dry
  run submits nothing;
- make: `make -n` with the same arguments (the target exists and expands), and a dry run of the
  snakemake command that the recipe would run;
- kxl: parsed by kxl's own argparse parser (subcommand, every flag, positionals and their types);
  a code span that only names a subcommand (`kxl merge`) checks that the subcommand exists. None
  is run: each needs pipeline outputs or, like `kxl lokr-table` (~20 s), is run by its own test.
Placeholders (`<name>`, `...`, `$(TARGET)`, an upper-case word such as `N`) are replaced through
PLACEHOLDERS; a command with a placeholder the table does not cover fails, and so does a table
entry that no doc uses any more.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_run import copy_checkout

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMENTED = [*sorted((ROOT / "config").glob("*.yaml")),
             *sorted((ROOT / "profiles").glob("*/profile.yaml"))]
PROGRAMS = ("snakemake", "kxl", "make")
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}

# Documented command -> the concrete command that is checked in its place.
PLACEHOLDERS = {
    # README quotes the recipe of `make run`; TARGET's default is the run.
    "snakemake --cores all $(TARGET)": "snakemake --cores all results/epsilon.safetensors",
    # <name>: an entry of audit.diffs in config/config.yaml.
    "snakemake --cores all results/audit/diff/<name>.html":
        "snakemake --cores all results/audit/diff/lokr-vs-merged.html",
    "snakemake results/audit/diff/<name>.html": "snakemake results/audit/diff/lokr-vs-merged.html",
    # <name>, NAME: an entry of audit.series in config/config.yaml.
    "snakemake --cores all results/audit/series/<name>.html":
        "snakemake --cores all results/audit/series/rebuilt.html",
    "kxl series --name NAME": "kxl series --name rebuilt",
    "kxl series --name <name>": "kxl series --name rebuilt",
    "kxl explain-step N": "kxl explain-step 12",
    "kxl explain-step N [--rank R]": "kxl explain-step 12 --rank 1",
    "kxl diff A B": "kxl diff results/epsilon-lokr.safetensors results/epsilon.safetensors",
}
# Files a documented command expects the reader to write, written into the checkout copy.
READER_FILES = {
    # docs/character-learning.md: each row's change, here the first one's
    "override.yaml": "plan:\n  epochs: 3\n",
}
# Documented commands that need a finished run: they must fail with this message and no other.
NEEDS_A_RUN = {
    "snakemake --report report.html": "marked for report but does not exist",
}


@dataclass(frozen=True)
class DocCommand:
    source: str  # file:line
    text: str  # as documented, whitespace collapsed
    span: bool  # an inline code span (may only name a kxl subcommand) rather than a command line


def _starts_with_program(text: str) -> bool:
    return text.split(" ", 1)[0] in PROGRAMS


def _joined(numbered: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Command lines of a shell block: `\\` continuations joined, `$ ` prompts and comments cut."""
    out: list[tuple[int, str]] = []
    start, parts = 0, []
    for no, line in numbered:
        line = re.sub(r"^\s*\$\s+", "", line)
        start = start or no
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        text = " ".join(" ".join([*parts, line]).split())
        text = re.sub(r"\s+#.*$", "", text)
        if _starts_with_program(text):
            out.append((start, text))
        start, parts = 0, []
    return out


def _spans(text: str, first_line: int) -> list[tuple[int, str]]:
    found = []
    for m in re.finditer(r"`([^`]+)`", text):
        code = " ".join(m.group(1).split())
        if _starts_with_program(code):
            found.append((first_line + text.count("\n", 0, m.start()), code))
    return found


def markdown_commands(path: Path, name: str) -> list[DocCommand]:
    prose, block, fence = [], [], None
    found: list[DocCommand] = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        m = re.match(r"^\s*```(\w*)\s*$", line)
        if m and fence is None:
            fence, block = m.group(1), []
        elif m:
            if fence in SHELL_FENCES:
                found += [DocCommand(f"{name}:{n}", t, False) for n, t in _joined(block)]
            fence = None
        elif fence is not None:
            block.append((no, line))
        prose.append("" if fence is not None or m else line)
    found += [DocCommand(f"{name}:{n}", t, True) for n, t in _spans("\n".join(prose), 1)]
    return found


def comment_commands(path: Path, name: str) -> list[DocCommand]:
    found: list[DocCommand] = []
    block: list[tuple[int, str]] = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        m = re.search(r"(?:^|\s)#(.*)$", line)
        comment = m.group(1) if m else ""
        if block or re.match(rf"\s{{2,}}({'|'.join(PROGRAMS)})\s", comment):
            block.append((no, comment))
            if not comment.rstrip().endswith("\\"):
                found += [DocCommand(f"{name}:{n}", t, False) for n, t in _joined(block)]
                block = []
        else:
            found += [DocCommand(f"{name}:{n}", t, True) for n, t in _spans(comment, no)]
    return found


def collect(root: Path = ROOT) -> list[DocCommand]:
    found = []
    for path in MARKDOWN:
        found += markdown_commands(path, path.relative_to(root).as_posix())
    for path in COMMENTED:
        found += comment_commands(path, path.relative_to(root).as_posix())
    return found


def placeholders(argv: list[str]) -> list[str]:
    marked = re.compile(r"<[^>]*>|\.\.\.|\$\(|\[")
    return [a for a in argv if marked.search(a) or re.fullmatch(r"[A-Z]+", a)]


def run(argv: list[str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def check_snakemake(args: list[str], cwd: Path, expect_failure: str | None = None) -> str | None:
    if "profiles/slurm" in args:
        pytest.importorskip("snakemake_executor_plugin_slurm")
    rc, log = run([sys.executable, "-m", "snakemake", *args, "-n"], cwd)
    if expect_failure is not None:
        return None if rc == 0 or expect_failure in log else f"not only {expect_failure!r}: {log}"
    return None if rc == 0 else f"the dry run fails (exit {rc}):\n{log[-2500:]}"


def check_make(args: list[str], cwd: Path) -> str | None:
    rc, log = run(["make", "-n", *args], cwd)
    if rc != 0:
        return f"`make -n` fails (exit {rc}):\n{log[-2500:]}"
    for line in log.splitlines():  # the snakemake call of the recipe (make run)
        words = shlex.split(line, comments=True)
        at = [i for i, w in enumerate(words) if Path(w).name == "snakemake"]
        if at and (problem := check_snakemake(words[at[0] + 1:], cwd)):
            return f"the recipe's `{line}`: {problem}"
    return None


def check_kxl(args: list[str], span: bool) -> str | None:
    from kxl.cli import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    if span and len(args) == 1:  # a mention of the subcommand only
        return None if args[0] in subcommands else f"no subcommand {args[0]!r}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args)
        except SystemExit as exc:
            return None if exc.code == 0 else f"kxl's parser rejects it: {err.getvalue()}"
    return None


def check(cmd: DocCommand, cwd: Path) -> str | None:
    """None when the documented command works, else what is wrong with it."""
    text = PLACEHOLDERS.get(cmd.text, cmd.text)
    argv = shlex.split(text)
    if cmd.text not in PLACEHOLDERS and (marks := placeholders(argv)):
        return f"placeholders {marks}: add the command to PLACEHOLDERS with a concrete substitute"
    program, args = argv[0], argv[1:]
    if program == "snakemake":
        return check_snakemake(args, cwd, NEEDS_A_RUN.get(cmd.text))
    if program == "make":
        return check_make(args, cwd)
    return check_kxl(args, cmd.span)


DOC_COMMANDS = collect()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout without results/, as a fresh clone has it."""
    root = copy_checkout(tmp_path_factory.mktemp("docs-checkout"))
    for name, text in READER_FILES.items():
        (root / name).write_text(text)
    return root


_checked: dict[DocCommand, str | None] = {}  # the same command documented twice runs once


@pytest.mark.parametrize("cmd", DOC_COMMANDS, ids=lambda c: f"{c.source} {c.text[:60]}")
def test_documented_command_works(cmd: DocCommand, checkout: Path) -> None:
    key = DocCommand("", cmd.text, cmd.span and cmd.text.startswith("kxl"))
    if key not in _checked:
        _checked[key] = check(cmd, checkout)
    assert _checked[key] is None, f"{cmd.source}: `{cmd.text}`"


def test_collector_sees_every_kind_of_command() -> None:
    texts = {c.text for c in DOC_COMMANDS}
    assert {
        "make test",  # README fenced block
        "snakemake --workflow-profile profiles/slurm results/epsilon.safetensors"
        " --configfile config/epsilon.yaml",  # README fenced block
        "kxl lokr-table",  # docs/ fenced block
        "snakemake --cores all results/epsilon.safetensors --configfile config/epsilon.yaml",
        "kxl verify results",  # README code span
        "kxl merge",  # README table: a subcommand named
    } <= texts
    assert {c.text for c in DOC_COMMANDS if c.source.startswith("profiles/")}  # comment lines


def test_every_placeholder_entry_is_still_documented() -> None:
    texts = {c.text for c in DOC_COMMANDS}
    assert set(PLACEHOLDERS) - texts == set()
    assert set(NEEDS_A_RUN) - texts == set()
    assert [f for f in READER_FILES if not any(f in t.split() for t in texts)] == []


def test_broken_commands_are_caught(checkout: Path, tmp_path: Path) -> None:
    def problem(text: str, span: bool = False) -> str:
        found = check(DocCommand("x", text, span), checkout)
        assert found is not None, text
        return found

    # issue 19: the target after --configfile is read as one more config file
    assert "FileNotFoundError" in problem(
        "snakemake --configfile config/epsilon.yaml results/epsilon.safetensors")
    assert "No rule to make target" in problem("make no-such-target")
    assert "unrecognized arguments: --no-such-flag" in problem("kxl diff a b --no-such-flag")
    assert "invalid choice" in problem("kxl no-such-command --help")
    assert "no subcommand" in problem("kxl no-such-command", span=True)
    assert "PLACEHOLDERS" in problem("snakemake results/audit/diff/<other>.html")
    assert "not only" in check_snakemake(["results/no-such-file"], checkout, "no such message")

    # the collector finds commands where the docs put them
    doc = tmp_path / "doc.md"
    doc.write_text("Run `snakemake -n x` or\n\n```sh\n$ make run \\\n    TARGET=y  # note\n```\n"
                   "```yaml\nkxl: not a command\n```\n")
    assert markdown_commands(doc, "doc.md") == [
        DocCommand("doc.md:4", "make run TARGET=y", False),
        DocCommand("doc.md:1", "snakemake -n x", True),
    ]
    conf = tmp_path / "c.yaml"
    conf.write_text("# kxl prose, not a command\na: 1  # see `kxl diff A B`\n"
                    "#   snakemake a \\\n#     --configfile b\n")
    assert comment_commands(conf, "c.yaml") == [
        DocCommand("c.yaml:2", "kxl diff A B", True),
        DocCommand("c.yaml:3", "snakemake a --configfile b", False),
    ]
