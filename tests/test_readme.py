"""The README's quick start and "score your own model" sections run as written.

Every fenced block of those two sections carries an annotation on the line before it:
``<!-- readme-test: fast -->`` (run in the default test run), ``<!-- readme-test: slow -->`` (run
with ``-m slow``) or ``<!-- readme-test: skip (reason) -->`` (needs the user's own files or data).
A block without one fails the test, so no command in those sections goes unchecked by accident.
Python blocks run in a fresh interpreter in a temporary folder; shell blocks run with bash in the
repository root (they name ``.venv/bin/robustmri``); both with the prepared-data cache in a
temporary folder (``ROBUSTMRI_CACHE``), so nothing of the user's is touched but ``reports/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("Quick start", "Score your own model in one call")
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(fast|slow|skip)\b(.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    section: str
    line: int
    language: str
    code: str
    mode: str | None  # fast, slow, skip, or None when unannotated
    reason: str


def readme_blocks(text: str, sections: tuple[str, ...] = SECTIONS) -> list[Block]:
    """The fenced blocks of the ``## <section>`` parts of ``text`` (their ``###`` subsections included)."""
    blocks: list[Block] = []
    section: str | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            title = line[3:].strip()
            section = title if title in sections else None
        match = _FENCE.match(line)
        if match and section is not None:
            start = i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            mark = _MARK.match(prev.strip())
            blocks.append(Block(section, start + 1, match.group(1), "\n".join(body) + "\n",
                                mark.group(1) if mark else None, mark.group(2).strip() if mark else ""))
        elif match:  # a block outside the sections: skip over it
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                i += 1
        i += 1
    return blocks


BLOCKS = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def test_every_block_of_the_checked_sections_is_annotated() -> None:
    assert {b.section for b in BLOCKS} == set(SECTIONS)
    bare = [f"README.md:{b.line}" for b in BLOCKS if b.mode is None]
    assert not bare, f"fenced blocks without a readme-test annotation: {bare}"
    assert all(b.reason for b in BLOCKS if b.mode == "skip"), "a skipped block must say why"
    assert any(b.mode == "fast" for b in BLOCKS)


def test_the_parser_reads_sections_marks_and_fences() -> None:
    text = ("## Quick start\n\n<!-- readme-test: fast -->\n```python\nprint(1)\n```\n\n```bash\nls\n```\n"
            "## Other\n\n```bash\nrm -rf /\n```\n### Sub\n## Score your own model in one call\n"
            "<!-- readme-test: skip (needs data) -->\n```toml\na = 1\n```\n")
    got = readme_blocks(text)
    assert [(b.section, b.language, b.mode, b.code) for b in got] == [
        ("Quick start", "python", "fast", "print(1)\n"), ("Quick start", "bash", None, "ls\n"),
        ("Score your own model in one call", "toml", "skip", "a = 1\n")]
    assert got[2].reason == "(needs data)"


def _run(block: Block, tmp_path: Path) -> None:
    env = {**os.environ, "ROBUSTMRI_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if block.language == "python":
        script = tmp_path / "block.py"
        script.write_text(block.code, encoding="utf-8")
        cmd, cwd = [sys.executable, str(script)], tmp_path
    elif block.language in ("bash", "sh"):
        cmd, cwd = ["bash", "-euo", "pipefail", "-c", block.code], ROOT
    else:
        pytest.fail(f"README.md:{block.line}: cannot run a {block.language or 'plain'} block; mark it skip")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, (f"README.md:{block.line} failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if block.language == "python":
        # the one-call API reports as it runs and ends with the summary table, as the CLI does
        assert "bench smoke" in proc.stderr and "report: " in proc.stdout and "vs lookup" in proc.stdout


def _params(mode: str) -> list:
    marks = [pytest.mark.slow] if mode == "slow" else []
    return [pytest.param(b, id=f"line{b.line}", marks=marks) for b in BLOCKS if b.mode == mode]


@pytest.mark.parametrize("block", _params("fast"))
def test_fast_readme_blocks_run_as_written(block: Block, tmp_path: Path) -> None:
    _run(block, tmp_path)


@pytest.mark.parametrize("block", _params("slow"))
def test_slow_readme_blocks_run_as_written(block: Block, tmp_path: Path) -> None:
    _run(block, tmp_path)
