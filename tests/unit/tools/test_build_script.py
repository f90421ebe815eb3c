"""tools/build.sh: cached builds are reused, a broken build names the tool and why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MAIN_OK = 'package main\n\nfunc main() { println("ok") }\n'
MAIN_BROKEN = "package main\n\nfunc main() { undefinedCall() }\n"


def _wrapper(src: Path, name: str, main: str) -> None:
    tool = src / name
    (tool / "cmd" / name).mkdir(parents=True)
    (tool / "go.mod").write_text(f"module example.test/{name}\n\ngo 1.22\n")
    (tool / "go.sum").write_text("")
    (tool / "cmd" / name / "main.go").write_text(main)
    (tool / "binaries").write_text(f"{name} ./cmd/{name}\n")


def _build(repo_root: Path, src: Path, cache: Path, *tools: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STRATA_TOOLS_SRC": str(src), "STRATA_TOOLS_DIR": str(cache)}
    return subprocess.run(
        [repo_root / "tools" / "build.sh", *tools],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_second_build_reuses_the_cache(repo_root: Path, tmp_path: Path) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    _wrapper(src, "hello", MAIN_OK)
    first = _build(repo_root, src, cache, "hello")
    assert first.returncode == 0, first.stderr
    assert "building hello" in first.stdout
    binary = cache / "bin" / "hello"
    built_at = binary.resolve().stat().st_mtime_ns
    second = _build(repo_root, src, cache, "hello")
    assert second.returncode == 0, second.stderr
    assert "is cached" in second.stdout
    assert "building" not in second.stdout
    assert binary.resolve().stat().st_mtime_ns == built_at
    assert subprocess.run([binary], capture_output=True, text=True).stderr.strip() == "ok"


def test_broken_build_names_tool_and_reason(repo_root: Path, tmp_path: Path) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    _wrapper(src, "broken", MAIN_BROKEN)
    result = _build(repo_root, src, cache, "broken")
    assert result.returncode != 0
    assert "FAILED to build broken for tool 'broken'" in result.stderr
    assert "undefined: undefinedCall" in result.stderr
    assert not (cache / "bin" / "broken").exists()


def test_unknown_tool_is_an_error(repo_root: Path, tmp_path: Path) -> None:
    result = _build(repo_root, tmp_path / "src", tmp_path / "cache", "nonesuch")
    assert result.returncode != 0
    assert "unknown tool 'nonesuch'" in result.stderr
