"""Real tools working inside a mount: git, tar + diff -r, python -m venv, sqlite3.

Tools exercise combinations no hand-written test thinks of (git's lock-file renames and
object hard links, tar's hard-link and mode handling, venv's symlinks and many small
files, SQLite's fsync-ordered journal and shared-memory mmap of WAL mode).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.fs.conftest import Mount, Strata
from tests.integration.fs.helpers import assert_same_tree

REPO = Path(__file__).resolve().parents[3]


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Strata Test",
    "GIT_AUTHOR_EMAIL": "test@strata.invalid",
    "GIT_COMMITTER_NAME": "Strata Test",
    "GIT_COMMITTER_EMAIL": "test@strata.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def make_source_tree(root: Path) -> Path:
    """A tree with what archives must carry: modes, symlinks, hard links, a big file,
    empty files and directories, odd names."""
    src = root / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    for i in range(40):
        (src / "pkg" / f"mod{i}.py").write_text(f"VALUE = {i}\n" * (i + 1))
    (src / "pkg" / "sub" / "data.bin").write_bytes(os.urandom(5 << 20))
    (src / "empty").touch()
    (src / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "script.sh", 0o755)
    os.chmod(src / "pkg" / "mod1.py", 0o600)
    os.symlink("pkg/mod2.py", src / "link-to-file")
    os.symlink("pkg/sub", src / "link-to-dir")
    os.symlink("nowhere", src / "dangling")
    os.link(src / "pkg" / "mod3.py", src / "hardlink")
    (src / "name with spaces & ünïcode").write_text("odd")
    return src


def test_git(strata: Strata, mounted: Mount) -> None:
    repo = mounted.path / "repo"
    repo.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=repo, env=GIT_ENV)
    for i in range(20):
        (repo / f"file{i}.txt").write_text(f"content {i}\n")
    (repo / "dir").mkdir()
    (repo / "dir" / "nested.txt").write_text("nested\n")
    run("git", "add", "-A", cwd=repo, env=GIT_ENV)
    run("git", "commit", "-q", "-m", "first", cwd=repo, env=GIT_ENV)
    (repo / "file0.txt").write_text("changed\n")
    (repo / "file1.txt").unlink()
    run("git", "mv", "file2.txt", "dir/renamed.txt", cwd=repo, env=GIT_ENV)
    run("git", "commit", "-q", "-am", "second", cwd=repo, env=GIT_ENV)
    run("git", "gc", "-q", cwd=repo, env=GIT_ENV)  # packs objects: renames, deletes
    log = run("git", "log", "--format=%s", cwd=repo, env=GIT_ENV).split()
    assert log == ["second", "first"]
    run("git", "fsck", "--strict", "--no-progress", cwd=repo, env=GIT_ENV)
    assert run("git", "status", "--porcelain", cwd=repo, env=GIT_ENV) == ""

    # The committed version is a working git repository too (clone from read-only).
    ro = strata.mount(mounted.commit("git repo"))
    clone = strata.tmp / "clone"
    run("git", "clone", "-q", ro.path / "repo", clone, env=GIT_ENV)
    assert (clone / "dir" / "renamed.txt").read_text() == "content 2\n"
    assert run("git", "log", "--format=%s", cwd=clone, env=GIT_ENV).split() == log


def test_tar_roundtrip(strata: Strata, mounted: Mount) -> None:
    src = make_source_tree(strata.tmp)
    archive = strata.tmp / "src.tar"
    run("tar", "-cf", archive, "-C", src.parent, "src")
    # Extract into the mount and compare with the original.
    run("tar", "-xpf", archive, "-C", mounted.path)
    run("diff", "-r", "--no-dereference", src, mounted.path / "src")
    assert_same_tree(src, mounted.path / "src")
    # Archive from the mount (reads, readdir, readlink, hard-link detection by nlink)
    # and extract back on local disk.
    back = strata.tmp / "back"
    back.mkdir()
    run("tar", "-cf", strata.tmp / "back.tar", "-C", mounted.path, "src")
    run("tar", "-xpf", strata.tmp / "back.tar", "-C", back)
    run("diff", "-r", "--no-dereference", src, back / "src")
    assert_same_tree(src, back / "src")
    # And from a read-only mount of the committed version.
    ro = strata.mount(mounted.commit("tar"))
    again = strata.tmp / "again"
    again.mkdir()
    run("tar", "-cf", strata.tmp / "ro.tar", "-C", ro.path, "src")
    run("tar", "-xpf", strata.tmp / "ro.tar", "-C", again)
    assert_same_tree(src, again / "src")


@pytest.mark.slow
def test_python_venv(strata: Strata, mounted: Mount) -> None:
    venv = mounted.path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    out = run(python, "-c", "import sys, json; print(json.dumps([sys.prefix, sys.version]))")
    assert str(venv) in out
    # pip works from inside the mount (installs files, compiles bytecode, renames).
    pkg = strata.tmp / "tinypkg"
    (pkg / "tinypkg").mkdir(parents=True)
    (pkg / "tinypkg" / "__init__.py").write_text("ANSWER = 42\n")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        '[project]\nname = "tinypkg"\nversion = "1.0"\n'
    )
    (pkg / "backend.py").write_text(_BACKEND)
    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", pkg)
    assert run(python, "-c", "import tinypkg; print(tinypkg.ANSWER)").strip() == "42"
    # The committed venv still runs from a read-only mount of a fresh daemon? Its
    # absolute paths point at this mount, so just check the files are intact.
    ro = strata.mount(mounted.commit("venv"))
    assert_same_tree(venv, ro.path / "venv")


#: a minimal PEP 517 backend (so the test needs no network and no setuptools download)
_BACKEND = """
import base64, hashlib, os, zipfile

def _record(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "tinypkg-1.0-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\\nName: tinypkg\\nVersion: 1.0\\n"
    wheel = "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files = {
        "tinypkg/__init__.py": open("tinypkg/__init__.py", "rb").read(),
        "tinypkg-1.0.dist-info/METADATA": meta.encode(),
        "tinypkg-1.0.dist-info/WHEEL": wheel.encode(),
    }
    records = [_record(n, d) for n, d in files.items()] + ["tinypkg-1.0.dist-info/RECORD,,"]
    files["tinypkg-1.0.dist-info/RECORD"] = ("\\n".join(records) + "\\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return name
"""


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite(strata: Strata, mounted: Mount, journal: str) -> None:
    db_path = mounted.path / "db" / "test.sqlite"
    db_path.parent.mkdir()
    con = sqlite3.connect(db_path)
    try:
        assert con.execute(f"PRAGMA journal_mode={journal}").fetchone()[0] == journal
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        for batch in range(10):
            with con:
                con.executemany(
                    "INSERT INTO t (body) VALUES (?)",
                    [(os.urandom(200) + bytes([batch]),) for _ in range(300)],
                )
        with con:
            con.execute("DELETE FROM t WHERE id % 3 = 0")
            con.execute("UPDATE t SET body = zeroblob(5000) WHERE id % 7 = 0")
        con.execute("VACUUM")
        if journal == "wal":
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = con.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    finally:
        con.close()
    assert count == 3000 - 1000
    # The sqlite3 command-line tool, a separate process, sees the same database.
    if shutil.which("sqlite3"):
        out = run("sqlite3", db_path, "PRAGMA integrity_check; SELECT COUNT(*) FROM t;")
        assert out.split() == ["ok", str(count)]
    # And the committed copy is a consistent database.
    ro = strata.mount(mounted.commit("db"))
    ro_con = sqlite3.connect(f"file:{ro.path / 'db' / 'test.sqlite'}?mode=ro&immutable=1", uri=True)
    try:
        assert ro_con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert ro_con.execute("SELECT COUNT(*) FROM t").fetchone()[0] == count
    finally:
        ro_con.close()


def test_copy_own_source_tree(strata: Strata, mounted: Mount) -> None:
    """``cp -a`` of this repository's source (many small files) and ``diff -r`` back."""
    # A private copy first: other work may edit the repository while this test runs.
    src = strata.tmp / "strata-src"
    shutil.copytree(REPO / "strata", src, ignore=shutil.ignore_patterns("__pycache__"))
    run("cp", "-a", src, mounted.path / "strata")
    run("diff", "-r", "--no-dereference", src, mounted.path / "strata")
    assert_same_tree(src, mounted.path / "strata")
