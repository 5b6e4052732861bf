"""Every snippet of the README runs as written.

Python blocks run one after another in a fresh namespace each, in a temporary folder. Shell blocks
that call ``intquant`` run with bash (``set -e``), with this interpreter's ``bin`` folder first on
the PATH. Shell blocks of ``make`` and ``pip install`` commands are not run here (they install
things); the test checks that each target exists in the Makefile and each extra among
intquant's installed metadata, so a renamed target or extra fails here.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    language: str
    code: str
    line: int

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"

    def commands(self) -> list[list[str]]:
        """The shell commands of the block, comments and blank lines dropped."""
        lines = (line.split("#", 1)[0].strip() for line in self.code.splitlines())
        return [shlex.split(line) for line in lines if line]


def _snippets() -> list[Snippet]:
    text = README.read_text(encoding="utf-8")
    return [
        Snippet(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1)
        for match in FENCE.finditer(text)
    ]


SNIPPETS = _snippets()
PYTHON = [snippet for snippet in SNIPPETS if snippet.language == "python"]
SHELL = [snippet for snippet in SNIPPETS if snippet.language == "sh"]
INSTALLING = [s for s in SHELL if all(c[0] in ("make", "pip") for c in s.commands())]
RUNNING = [s for s in SHELL if s not in INSTALLING]


def test_every_block_is_covered() -> None:
    assert PYTHON and RUNNING and INSTALLING
    languages = {snippet.language for snippet in SNIPPETS}
    assert languages <= {"python", "sh", "text"}, f"a README block of unknown language: {languages}"


@pytest.mark.parametrize("snippet", PYTHON, ids=[snippet.name for snippet in PYTHON])
def test_python_snippet_runs(snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = compile(snippet.code, snippet.name, "exec")
    exec(code, {"__name__": "__readme__"})  # the README's own code


@pytest.mark.parametrize("snippet", RUNNING, ids=[snippet.name for snippet in RUNNING])
def test_shell_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    bin_folder = Path(sys.executable).parent
    if not (bin_folder / "intquant").exists():
        pytest.skip(f"SKIPPED LOUDLY: no `intquant` command beside {sys.executable}; install intquant")
    environment = {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["bash", "-e", "-c", snippet.code],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{snippet.name} failed:\n{result.stdout}\n{result.stderr}"


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.MULTILINE))


def _extras() -> set[str]:
    return set(importlib.metadata.metadata("intquant").get_all("Provides-Extra") or ())


@pytest.mark.parametrize("snippet", INSTALLING, ids=[snippet.name for snippet in INSTALLING])
def test_install_snippet_names_what_exists(snippet: Snippet) -> None:
    targets, extras = _make_targets(), _extras()
    for command in snippet.commands():
        if command[0] == "make":
            assert set(command[1:]) <= targets, f"{snippet.name}: no such make target in {command}"
            continue
        assert command[:2] == ["pip", "install"], f"{snippet.name}: unexpected command {command}"
        for requirement in command[2:]:
            match = re.fullmatch(r"\.(?:\[([\w,]+)\])?", requirement)
            assert match, f"{snippet.name}: pip installs {requirement!r}, not this project"
            named = set(match.group(1).split(",")) if match.group(1) else set()
            assert named <= extras, f"{snippet.name}: unknown extras {named - extras}"
