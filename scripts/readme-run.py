#!/usr/bin/env python3
"""Runs a command block of a README verbatim, so that the README cannot drift from the code.

    scripts/readme-run.py README.md containers     # run the block marked `containers`
    scripts/readme-run.py --print README.md containers
    scripts/readme-run.py --list README.md

A block is marked by an HTML comment on the line before it (invisible when rendered):

    <!-- readme-run: NAME (which test runs it) -->

followed by a fenced or indented code block. The block runs in one bash shell (`set -euo
pipefail`, from the repository root), so `. .venv/bin/activate` carries over to the next
commands. A command whose trailing comment starts with an HTTP status (`# 401 ...`) must have
printed that status (curl -i); one whose comment shows `data: [DONE]` must have printed it.
Exits non-zero on the first failing command or unmet expectation; writes a JUnit report to
$RESULTS/readme-NAME.xml when RESULTS is set.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- readme-run: (?P<name>[\w.-]+)\b.*-->\s*$")
STATUS_LINE = re.compile(r"^HTTP/[\d.]+ (\d{3})\b", re.MULTILINE)


def blocks(text: str) -> dict[str, str]:
    """Every marked block of a README: name -> its commands (dedented, as a shell reads them)."""
    lines = text.splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        body: list[str] = []
        if j < len(lines) and lines[j].startswith("```"):
            j += 1
            while j < len(lines) and not lines[j].startswith("```"):
                body.append(lines[j])
                j += 1
        else:
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                body.append(lines[j][4:])
                j += 1
        if not "".join(body).strip():
            raise SystemExit(f"readme-run: the block after the marker {m['name']!r} is empty")
        if m["name"] in found:
            raise SystemExit(f"readme-run: two blocks are marked {m['name']!r}")
        found[m["name"]] = "\n".join(body).strip("\n") + "\n"
    return found


def trailing_comment(line: str) -> str | None:
    """The `# comment` ending a shell line, outside quotes; None when there is none."""
    single = double = False
    for k, ch in enumerate(line):
        if ch == "'" and not double:
            single = not single
        elif ch == '"' and not single:
            double = not double
        elif ch == "#" and not single and not double and (k == 0 or line[k - 1].isspace()):
            return line[k + 1 :].strip()
    return None


def commands(block: str) -> list[tuple[str, str | None]]:
    """The block's commands (backslash continuations joined) with their trailing comments."""
    result: list[tuple[str, str | None]] = []
    current: list[str] = []
    for line in block.splitlines():
        if not current and not line.strip():
            continue
        current.append(line)
        if not line.rstrip().endswith("\\"):
            result.append(("\n".join(current), trailing_comment(current[-1])))
            current = []
    if current:
        raise SystemExit("readme-run: the block ends with a line continuation")
    return result


def expectations(comment: str | None) -> list[str]:
    """What a command's comment promises: an HTTP status first, `data: [DONE]` anywhere."""
    if not comment:
        return []
    wanted = []
    m = re.match(r"(\d{3})\b", comment)
    if m:
        wanted.append(f"status {m.group(1)}")
    if "data: [DONE]" in comment:
        wanted.append("data: [DONE]")
    return wanted


def unmet(wanted: list[str], output: str) -> list[str]:
    missing = []
    for want in wanted:
        if want.startswith("status "):
            statuses = STATUS_LINE.findall(output)
            status = want.split()[1]
            if not statuses or statuses[0] != status:
                saw = statuses[0] if statuses else "no status line"
                missing.append(f"HTTP {status} (saw {saw})")
        elif want not in output:
            missing.append(repr(want))
    return missing


def run(name: str, block: str) -> int:
    cmds = commands(block)
    # One shell for the whole block; a marker line before each command splits its output.
    tag = f"@@readme-run-{os.getpid()}"
    script = ["set -euo pipefail", "exec 2>&1", f"cd {quote(str(ROOT))}"]
    for n, (cmd, _) in enumerate(cmds):
        script += [f"echo {tag} {n}", cmd]
    script.append(f"echo {tag} end")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    outputs: list[list[str]] = []
    finished = False
    with subprocess.Popen(  # noqa: S603
        ["bash", "-c", "\n".join(script)],  # noqa: S607
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if tag in line:
                # a command's output without a final newline runs into the marker
                before, _, line = line.partition(tag)
                if before:
                    sys.stdout.write(before + "\n")
                    if outputs:
                        outputs[-1].append(before)
                finished = line.split()[0] == "end"
                if not finished:
                    print(f"$ {cmds[len(outputs)][0]}", flush=True)
                outputs.append([])
                continue
            sys.stdout.write(line)
            sys.stdout.flush()
            if outputs:
                outputs[-1].append(line)
    problems = []
    ran = len(outputs) - 1 if finished else len(outputs)
    if proc.returncode != 0:
        failed = cmds[ran - 1][0] if ran else "?"
        problems.append(f"exit status {proc.returncode} from: {failed}")
        ran -= 1
    for (cmd, comment), output in zip(cmds[:ran], outputs, strict=False):
        missing = unmet(expectations(comment), "".join(output))
        if missing:
            first = cmd.splitlines()[0]
            problems.append(f"{first} ...: expected {', '.join(missing)} (# {comment})")
    for problem in problems:
        print(f"readme-run {name}: FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"readme-run {name}: {len(cmds)} commands ran as written, every expectation met")
    return 1 if problems else 0


def quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--list", action="store_true", help="list the marked blocks")
    parser.add_argument("--print", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--junit-name", help="the JUnit report's name (default: readme-NAME)")
    parser.add_argument("readme")
    parser.add_argument("name", nargs="?")
    args = parser.parse_args()
    found = blocks(Path(args.readme).read_text(encoding="utf-8"))
    if args.list:
        print("\n".join(found))
        return 0
    if args.name not in found:
        marked = ", ".join(found) or "none"
        parser.error(f"no block marked {args.name!r} in {args.readme} (marked: {marked})")
    if args.print:
        for cmd, comment in commands(found[args.name]):
            print(cmd, "   -> expects", expectations(comment) or "exit status 0")
        return 0
    start = time.monotonic()
    rc = run(args.name, found[args.name])
    results = os.environ.get("RESULTS")
    if results:
        suite = args.junit_name or f"readme-{args.name}"
        message = quoteattr(f"{args.readme} block {args.name} failed")
        failure = f"<failure message={message}/>" if rc else ""
        Path(results).mkdir(parents=True, exist_ok=True)
        Path(results, f"{suite}.xml").write_text(
            f'<testsuite name="{suite}" tests="1" failures="{1 if rc else 0}">'
            f'<testcase classname="readme" name="{args.name}"'
            f' time="{time.monotonic() - start:.0f}">'
            f"{failure}</testcase></testsuite>\n",
            encoding="utf-8",
        )
    return rc


if __name__ == "__main__":
    sys.exit(main())
