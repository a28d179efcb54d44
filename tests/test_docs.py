"""The guides run: every ```sh block of README.md and docs/*.md, pasted in order into one shell.

The README's "Guides by role" section names the order of the walkthrough: the README from
top to bottom, then the guides in docs/ in the order its paragraph "... in this order:"
links them. :func:`walkthrough` collects the ```sh blocks in that order; a block whose
fence is preceded by ``<!-- not-run: why -->`` (``make demo``, ``make test``) is left out.

:func:`run_blocks` (for :func:`test_the_walkthrough_runs`, about two and a half minutes
with Spark and Ray) writes the blocks into one bash script with ``set -Eeuo pipefail``
(a command that fails unexpectedly stops it; commands meant to fail say so with
``|| true`` or a test of ``$?``) and runs it in a scratch folder: a fresh platform home, a
fresh ``HOME``, no ``SANDBOX_*`` variables of the developer's, and the interpreter's
``bin`` folder first on ``PATH``. The folder holds a link to ``sandbox/`` (the guides name
``sandbox/demo/classifications/*.yaml``) and nothing else of the repository, so every file
the guides write stays in the scratch folder. A failure names the document, the line and
the command, with the standard error of its block.

:func:`lint` is cheap and runs in ``make test-fast`` too: no ``[--optional]`` brackets or
``a|b`` alternatives pasted into a runnable block, no hard-coded ids (``job:4``,
``prod-000001``, ``output review 12``, ``--agreement 1``), no dates written out as
option values (they go stale); and no ```bash or ```console block the test would skip.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUNNABLE = "sh"
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*\S.*-->\s*$")
ORDER_LINK = re.compile(r"\]\((docs/[\w-]+\.md)\)")
# blocks in these languages would be skipped by the test, so they are not allowed
SHELL_ALIASES = {"bash", "shell", "console", "zsh"}
TIMEOUT_S = 1800  # the whole walkthrough, every guide in order (a guard, not a timing)


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    run: bool  # False when marked <!-- not-run: ... -->


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its language and line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2).lower(), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        marked = start > 0 and bool(NOT_RUN.match(lines[start - 1].strip()))
        found.append(
            Block(str(path.relative_to(REPO)), start + 1, lang, "\n".join(body) + "\n", not marked)
        )
        i += 1
    return found


def docs_order() -> list[Path]:
    """The guides in docs/, in the order the README's guides section names them."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Guides by role", 1)[1].split("\n## ", 1)[0]
    paragraph = next(
        (p for p in section.split("\n\n") if "in this order:" in p),
        None,
    )
    assert paragraph, "README's 'Guides by role' must say 'in this order:' with links to docs/"
    return [REPO / link for link in ORDER_LINK.findall(paragraph.split("in this order:", 1)[1])]


def walkthrough() -> list[Block]:
    """The runnable ```sh blocks, README first, then the guides in the README's order."""
    out = []
    for path in [README, *docs_order()]:
        out.extend(b for b in blocks_of(path) if b.lang == RUNNABLE and b.run)
    return out


# --- the lint --------------------------------------------------------------------------------

LINT_RULES = [
    (
        "an optional part in brackets; show it in prose or in a ```text block",
        re.compile(r"(?<![\w$\]\[)])\[(?:--?[A-Za-z][\w-]*|[A-Z][A-Z0-9_]*|\d+)[^\]\n]*\](?!\])"),
    ),
    (
        "alternatives with '|'; pick one, name the others in prose",
        re.compile(r"(?<=[\w\])])\|(?=[\w\[(-])"),
    ),
    ("a hard-coded job id; take it from --json output", re.compile(r"\bjob:\d")),
    ("a hard-coded product id; take it from --json output", re.compile(r"\bprod-\d")),
    (
        "a hard-coded object id; take it from --json output",
        re.compile(
            r"\bsandbox\b.*\b(?:show|appoint|score|sign|suspend|restore|terminate|expire|"
            r"approve|refuse|answer|review|vote)\s+\d+\b"
        ),
    ),
    (
        "a hard-coded object id; take it from --json output",
        re.compile(r"--(?:agreement|notice|job|grant|application|request)[ =]\d+\b"),
    ),
    (
        "a date written out; compute it from today, e.g. $(date -u -d '+30 days' +%F)",
        re.compile(r"--[\w-]+[ =]['\"]?20\d\d-\d\d"),
    ),
]


def lint(block: Block) -> list[str]:
    """What keeps a block from running when pasted: placeholders, alternatives, fixed ids."""
    problems = []
    for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for message, pattern in LINT_RULES:
            if pattern.search(code):
                problems.append(f"{block.doc}:{number}: {message}: {line.strip()}")
    return problems


def all_markdown() -> list[Path]:
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def test_the_order_names_every_guide():
    named = docs_order()
    assert len(named) == len(set(named)), "a guide is named twice in the README's order"
    assert sorted(named) == sorted((REPO / "docs").glob("*.md")), (
        "the README's walkthrough order must name every docs/*.md exactly once"
    )


def test_runnable_blocks_pass_the_lint():
    problems = [p for b in walkthrough() for p in lint(b)]
    assert not problems, "\n".join(problems)


def test_no_shell_block_escapes_the_test():
    escaped = [
        f"{b.doc}:{b.line}: ```{b.lang}: use ```sh (run by this test) or ```text"
        for path in all_markdown()
        for b in blocks_of(path)
        if b.lang in SHELL_ALIASES
    ]
    assert not escaped, "\n".join(escaped)


def test_few_blocks_are_skipped():
    skipped = [b for path in all_markdown() for b in blocks_of(path) if not b.run]
    assert {b.doc for b in skipped} <= {"README.md"}, skipped
    assert len(skipped) <= 2, skipped


@pytest.mark.parametrize(
    "text",
    [
        "sandbox serve --port 8040 [--workers N]\n",
        'sandbox he sum --dataset d --scheme ckks|bfv --as "$OPERATOR"\n',
        'sandbox he sum --dataset d [--scheme ckks] --as "$OPERATOR"\n',
        'sandbox agreement expire [1] --as "$AUTHORITY"\n',
        'sandbox ledger show --subject job:4 --as "$AUDITOR"\n',
        'sandbox product get prod-000001 --out my-products --as "$OPERATOR"\n',
        'sandbox output review 12 --as "$OPERATOR"\n',
        'sandbox request data --agreement 1 --dataset persons --as "$OPERATOR"\n',
        'sandbox grant add --operator o --dataset persons --until 2027-12-31 --as "$A"\n',
    ],
)
def test_the_lint_catches_what_cannot_be_pasted(text):
    assert lint(Block("docs/x.md", 1, RUNNABLE, text, True))


@pytest.mark.parametrize(
    "text",
    [
        'JOB=$(sandbox job submit --sql q.sql --json --as "$OPERATOR" | field job)\n',
        'sandbox ledger show --subject "job:$JOB" --as "$AUDITOR"\n',
        'echo "SELECT 1" | sandbox job submit --sql - --as "$OPERATOR" || true\n',
        'sandbox grant add --operator o --dataset persons --until "$UNTIL" --as "$A"\n',
        'until curl -sf "$API/readyz" >/dev/null; do sleep 0.2; done\n',
    ],
)
def test_the_lint_lets_runnable_commands_pass(text):
    assert lint(Block("docs/x.md", 1, RUNNABLE, text, True)) == []


# --- running the walkthrough -----------------------------------------------------------------

PRELUDE = """\
set -Eeuo pipefail
shopt -s inherit_errexit
trap 'printf "\\n@@failed %s %s %s\\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR
"""


def script_of(blocks: list[Block]) -> tuple[str, dict[int, tuple[int, int]]]:
    """One bash script; maps each script line to (block index, line in the document)."""
    lines = PRELUDE.splitlines()
    where: dict[int, tuple[int, int]] = {}
    for index, block in enumerate(blocks):
        marker = f'printf "\\n@@block {index} %s\\n" "$EPOCHREALTIME"'
        lines += [marker, marker + " >&2"]
        for offset, text in enumerate(block.text.splitlines(), start=1):
            lines.append(text)
            where[len(lines)] = (index, block.line + offset)
    lines.append('printf "\\n@@done %s\\n" "$EPOCHREALTIME"')
    return "\n".join(lines) + "\n", where


def split_by_block(text: str) -> dict[int, str]:
    """The output of each block, keyed by its index, from the markers."""
    parts: dict[int, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^@@block (\d+) ", line)
        if match:
            current = int(match.group(1))
            parts[current] = ""
        elif current is not None and not line.startswith(("@@done", "@@failed")):
            parts[current] += line + "\n"
    return parts


def scratch_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    bin_dir = str(Path(sys.executable).parent)
    home = tmp / "home"
    home.mkdir()
    env.update(
        HOME=str(home),
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def run_blocks(blocks: list[Block], tmp: Path, timeout: float = TIMEOUT_S) -> str | None:
    """Run the blocks as one script in a scratch folder under ``tmp``; None, or what failed."""
    script, where = script_of(blocks)
    work = tmp / "work"
    work.mkdir()
    (work / "sandbox").symlink_to(REPO / "sandbox", target_is_directory=True)
    (tmp / "walkthrough.sh").write_text(script, encoding="utf-8")
    out_path, err_path = tmp / "stdout.txt", tmp / "stderr.txt"
    started = time.monotonic()
    # files, not pipes: a server that a failed block left running would hold a pipe open
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            ["bash", str(tmp / "walkthrough.sh")],
            cwd=work,
            env=scratch_env(tmp),
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # servers a failed block left running, and anything else of the script's
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    elapsed = time.monotonic() - started
    out = out_path.read_text(encoding="utf-8", errors="replace")
    err = err_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode == 0 and "@@done" in out:
        return None
    if proc.returncode < 0:
        err += f"\n(stopped after {timeout:.0f} s)"
    errors = split_by_block(err)
    index = max(errors) if errors else 0
    doc_line, command = blocks[index].line, "(see its standard error)"
    failed = re.search(r"^@@failed (\d+) (\d+) (.*)$", err, re.M)
    if failed:
        index, doc_line = where.get(int(failed.group(2)), (index, doc_line))
        command = failed.group(3)
    block = blocks[index]
    tail = "\n".join(errors.get(index, err).splitlines()[-40:])
    stdout_tail = "\n".join(split_by_block(out).get(index, "").splitlines()[-15:])
    return (
        f"{block.doc}:{doc_line} (the block at line {block.line}) failed with exit status "
        f"{proc.returncode} after {elapsed:.0f} s\ncommand: {command}\n"
        f"--- standard error of the block ---\n{tail}\n"
        f"--- last lines of its standard output ---\n{stdout_tail}"
    )


def test_a_failing_command_is_named_with_its_block(tmp_path):
    blocks = [
        Block("README.md", 10, RUNNABLE, "X=$(echo 1)\necho fine\n", True),
        Block(
            "docs/x.md",
            20,
            RUNNABLE,
            "false || true\necho about to fail >&2\nls no-such-file\necho never\n",
            True,
        ),
    ]
    failure = run_blocks(blocks, tmp_path, timeout=60)
    assert failure is not None
    assert failure.startswith("docs/x.md:23 (the block at line 20)"), failure
    assert "command: ls no-such-file" in failure
    assert "about to fail" in failure and "no-such-file" in failure


def test_an_unset_variable_fails_the_block(tmp_path):
    blocks = [Block("docs/x.md", 5, RUNNABLE, 'echo "$NOT_SET_ANYWHERE"\n', True)]
    failure = run_blocks(blocks, tmp_path, timeout=60)
    assert failure is not None and failure.startswith("docs/x.md:5"), failure
    assert "NOT_SET_ANYWHERE" in failure


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.ray
def test_the_walkthrough_runs(tmp_path):
    failure = run_blocks(walkthrough(), tmp_path)
    if failure:
        pytest.fail(failure, pytrace=False)
