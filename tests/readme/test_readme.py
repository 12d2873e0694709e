"""The READMEs' commands run as written: scripts/readme-run.py (which runs a marked block verbatim)
and what every README promises a newcomer (targets that exist, tools on PATH, scenarios that exist).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "scripts" / "readme-run.py"
READMES = [
    ROOT / "README.md",
    *sorted(ROOT.glob("roles/*/README.md")),
    ROOT / "llm_api" / "README.md",
    ROOT / "collections" / "ai_gateway" / "README.md",
    ROOT / "tests" / "kongsim" / "README.md",
]
VENV_TOOLS = {"molecule", "ansible-playbook", "ansible-galaxy", "ansible-doc", "ansible-test"}
SCRIPT = re.compile(r"(?:^|\s)((?:scripts|tests|molecule)/[\w./-]+\.(?:sh|py))")


def run_block(tmp_path: Path, body: str, name: str = "demo") -> subprocess.CompletedProcess:
    readme = tmp_path / "README.md"
    readme.write_text(f"# demo\n\n<!-- readme-run: {name} (a test) -->\n\n```sh\n{body}```\n")
    env = {"PATH": "/usr/bin:/bin", "RESULTS": str(tmp_path / "results")}
    return subprocess.run(
        [sys.executable, str(RUNNER), str(readme), name],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_a_block_runs_in_one_shell_and_its_comments_are_checked(tmp_path: Path) -> None:
    proc = run_block(
        tmp_path,
        "GREETING=hello                          # state carries to the next commands\n"
        "printf 'HTTP/1.1 401 Unauthorized\\n\\n{}'  # 401 No API key found\n"
        "printf 'data: x\\n\\n'; \\\n"
        "  printf 'data: [DONE]\\n'                 # SSE ... data: [DONE]\n"
        'test "$GREETING" = hello\n',
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 commands ran as written" in proc.stdout
    report = (tmp_path / "results" / "readme-demo.xml").read_text()
    assert 'failures="0"' in report


def test_a_status_other_than_the_comment_says_fails(tmp_path: Path) -> None:
    proc = run_block(tmp_path, "printf 'HTTP/1.1 200 OK\\n'   # 401 No API key found\n")
    assert proc.returncode == 1
    assert "expected HTTP 401 (saw 200)" in proc.stderr
    assert 'failures="1"' in (tmp_path / "results" / "readme-demo.xml").read_text()


def test_a_missing_done_event_fails(tmp_path: Path) -> None:
    proc = run_block(tmp_path, "echo 'data: {}'   # SSE ... data: [DONE]\n")
    assert proc.returncode == 1
    assert "expected 'data: [DONE]'" in proc.stderr


def test_the_first_failing_command_stops_the_block(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = run_block(tmp_path, f"false\ntouch {marker}\n")
    assert proc.returncode == 1
    assert "exit status 1 from: false" in proc.stderr
    assert not marker.exists()


def test_an_unknown_block_is_refused_with_the_marked_names(tmp_path: Path) -> None:
    run_block(tmp_path, "true\n")
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(tmp_path / "README.md"), "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "no block marked 'nope'" in proc.stderr
    assert "(marked: demo)" in proc.stderr


def test_the_container_quick_start_is_marked_and_names_real_scenarios() -> None:
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--print", str(ROOT / "README.md"), "containers"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("make setup")
    activate = next(i for i, line in enumerate(lines) if line.startswith(". .venv/bin/activate"))
    scenarios = re.findall(r"^molecule \w+ -s (\w+)", proc.stdout, re.MULTILINE)
    first_molecule = next(i for i, line in enumerate(lines) if line.startswith("molecule "))
    assert activate < first_molecule
    assert set(scenarios) == {"default"}
    assert (ROOT / "molecule" / "default" / "molecule.yml").is_file()
    # converge, verify (whose leak scan runs site.yml again: the idempotence check), destroy
    steps = re.findall(r"^molecule (\w+) -s", proc.stdout, re.MULTILINE)
    assert steps == ["converge", "verify", "destroy"]
    # the make test lane runs this block
    assert (
        "readme-run.py --junit-name molecule-default README.md containers"
        in (ROOT / "scripts" / "test-readme-containers.sh").read_text()
    )
    assert "scripts/test-readme-containers.sh" in (ROOT / "scripts" / "test-all.sh").read_text()


def code_lines(text: str) -> list[str]:
    """Command lines of a README: indented or fenced code, and inline `code` spans."""
    lines = []
    prose = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
        else:
            prose.append(line)
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", "\n".join(prose))]
    return lines


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_commands_run_as_written(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    commands = code_lines(text)
    # .venv/bin/<tool> fails for tools that call others by name (molecule -> ansible-config)
    assert not [c for c in commands if re.match(r"\.venv/bin/(molecule|ansible)", c)], readme
    bare = [c for c in commands if c.split(" ", 1)[0] in VENV_TOOLS and " " in c]
    if bare:
        # a README that shows a tool of the virtualenv says how it gets on PATH
        assert ". .venv/bin/activate" in text, (readme, bare)
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    for cmd in commands:
        for target in re.findall(r"^make ((?:[\w-]+ ?)+)", cmd):
            for name in target.split():
                assert name in targets, f"{readme}: `make {name}` is not a Makefile target"
    for script in SCRIPT.findall(" ".join(commands)):
        where = [ROOT / script, readme.parent / script]
        assert any(p.is_file() for p in where), f"{readme}: {script} does not exist"
