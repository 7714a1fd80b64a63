"""The README's first code block and ``.ci/run`` describe one install: a README follower gets
what CI tests.  Command 1 (the line after ``# 1.``) installs; command 2 (after ``# 2.``) runs the
tests.  ``.ci/run`` must pip-install the same things in the same order (plus its pip upgrade) and
end with command 2's pytest command.  Both files are parsed, not compared by hand, so editing one
without the other fails here with both versions shown."""

from __future__ import annotations

import re
import shlex

from conftest import REPO

README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"
PIP_UPGRADE = ["pip", "install", "--upgrade", "pip"]


def first_bash_block(text: str) -> list[str]:
    """The lines of the first ```bash fenced block of ``text``."""
    match = re.search(r"^```bash\n(.*?)^```", text, re.S | re.M)
    assert match, "the README has no ```bash code block"
    return match.group(1).splitlines()


def numbered_command(lines: list[str], number: int) -> str:
    """The line after the comment ``# <number>.``."""
    for i, line in enumerate(lines):
        if re.match(rf"#\s*{number}\.", line.strip()):
            assert i + 1 < len(lines), f"nothing follows '# {number}.' in the README's first code block"
            return lines[i + 1]
    raise AssertionError(f"the README's first code block has no '# {number}.' comment:\n" + "\n".join(lines))


def simple_commands(line: str) -> list[list[str]]:
    """``line`` split at ``&&`` / ``;`` into commands, each as shell words (comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token in ("&&", ";", "||", "|", "&"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def without_env(words: list[str]) -> list[str]:
    """``words`` without leading ``NAME=value`` assignments (``UEBENCH_DATA=... pytest``)."""
    i = 0
    while i < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[i]):
        i += 1
    return words[i:]


def normalised(words: list[str]) -> list[str]:
    """One spelling of a pip command: ``python -m pip`` / ``python3 -m pip`` → ``pip``; quiet
    flags dropped (CI is quiet, a reader's terminal need not be)."""
    words = without_env(words)
    if len(words) >= 3 and re.fullmatch(r"python[0-9.]*", words[0]) and words[1:3] == ["-m", "pip"]:
        words = ["pip", *words[3:]]
    if words[:1] == ["pip"]:
        words = [w for w in words if w not in ("-q", "--quiet")]
    return words


def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in map(normalised, commands) if c[:2] == ["pip", "install"]]


def ci_commands() -> list[list[str]]:
    """Every command ``.ci/run`` runs, in order."""
    return [c for line in CI_RUN.read_text().splitlines() for c in simple_commands(line)]


def _show(commands: list[list[str]]) -> str:
    return "\n".join("  " + shlex.join(c) for c in commands) or "  (none)"


def test_ci_installs_what_readme_command_1_installs_in_the_same_order():
    readme = pip_installs(simple_commands(numbered_command(first_bash_block(README.read_text()), 1)))
    ci = [c for c in pip_installs(ci_commands()) if c != PIP_UPGRADE]
    assert readme, "README command 1 installs nothing with pip"
    assert ci == readme, (
        "README command 1 and .ci/run must pip-install the same things in the same order "
        f"(after normalising python -m pip and -q; .ci/run may also upgrade pip):\n"
        f"README command 1:\n{_show(readme)}\n.ci/run:\n{_show(ci)}"
    )


def test_ci_ends_with_readme_command_2():
    readme = [without_env(c) for c in simple_commands(numbered_command(first_bash_block(README.read_text()), 2))]
    ci_last = without_env(ci_commands()[-1])
    assert readme == [ci_last], (
        ".ci/run's last command must be README command 2 (its UEBENCH_DATA prefix aside, which .ci/run exports):\n"
        f"README command 2:\n{_show(readme)}\n.ci/run's last command:\n{_show([ci_last])}"
    )


def test_ci_exports_the_data_folder_readme_command_2_sets():
    """Command 2's ``UEBENCH_DATA=`` prefix is what .ci/run's export stands in for."""
    command_2 = simple_commands(numbered_command(first_bash_block(README.read_text()), 2))[0]
    assert command_2[0].startswith("UEBENCH_DATA="), command_2
    assert any(c[:1] == ["export"] and c[1].startswith("UEBENCH_DATA=") for c in ci_commands() if len(c) > 1), \
        ".ci/run does not export UEBENCH_DATA"


def test_the_parsing_normalises_what_it_should():
    """The helpers above are what the comparisons rest on: check them on known input."""
    assert simple_commands("a 'b c' && d # note") == [["a", "b c"], ["d"]]
    assert normalised(["python", "-m", "pip", "install", "-q", "-e", ".[test]"]) == ["pip", "install", "-e", ".[test]"]
    assert normalised(["python3", "-m", "pip", "install", "--quiet", "x"]) == ["pip", "install", "x"]
    assert without_env(["UEBENCH_DATA=../d", "python", "-m", "pytest", "-q"]) == ["python", "-m", "pytest", "-q"]
    assert numbered_command(["# 1. install", "pip install x", "# 2. test", "pytest"], 2) == "pytest"
