"""Synthetic inputs built once per invocation and shared by every target.

Built rather than downloaded (nothing outside the package registries is reachable),
deterministic in shape, and source-tree-like: nested directories, mostly small text
files, a few large ones.
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import blake3

from tests.bench.system import run

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
GIT += ["-c", "safe.directory=*", "-c", "init.defaultBranch=main", "-c", "gc.auto=0"]


def _sizes(count: int, total: int, rng: random.Random) -> list[int]:
    """File sizes with a source-tree shape: log-uniform 100 B-64 KiB, scaled to ``total``."""
    raw = [int(2 ** rng.uniform(6.6, 16)) for _ in range(count)]
    scale = total / sum(raw)
    return [max(1, int(size * scale)) for size in raw]


def _relpaths(count: int, rng: random.Random, depth: int = 3, width: int = 12) -> list[str]:
    """Nested relative paths ``dNN/dNN/.../fNNNNN.ext``, a few dozen files per directory."""
    exts = [".py", ".c", ".h", ".md", ".json", ".txt", ".go", ".rs"]
    paths = []
    for i in range(count):
        parts = [f"d{rng.randrange(width):02d}" for _ in range(rng.randint(1, depth))]
        paths.append("/".join([*parts, f"f{i:05d}{rng.choice(exts)}"]))
    return paths


def _text(seed: str, size: int) -> bytes:
    """Hex text: looks like source to git/tar, is unique, costs ~nothing to make."""
    return blake3.blake3(seed.encode()).hexdigest(length=(size + 1) // 2).encode()[:size]


def build_git_repo(path: Path, files: int, total: int) -> Path:
    """A repository of ``files`` files in two commits, packed (as a cloned repo would be)."""
    rng = random.Random(1)
    path.mkdir(parents=True)
    run([*GIT, "init", "-q", path])
    for i, (rel, size) in enumerate(
        zip(_relpaths(files, rng), _sizes(files, total, rng), strict=True)
    ):
        file = path / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(_text(f"git{i}", size))
    run([*GIT, "add", "-A"], cwd=path)
    run([*GIT, "commit", "-q", "-m", "initial import"], cwd=path)
    for rel in _relpaths(files, random.Random(1))[: max(1, files // 20)]:
        with open(path / rel, "ab") as file:
            file.write(b"\nchanged\n")
    run([*GIT, "commit", "-q", "-a", "-m", "second commit"], cwd=path)
    run([*GIT, "gc", "-q", "--aggressive"], cwd=path)
    return path


def build_tarball(path: Path, files: int, total: int) -> Path:
    """An uncompressed source tarball of ``files`` files (~``total`` bytes).

    Uncompressed so the timing is the filesystem's, not gzip's (which is the same CPU
    cost on every target and would only dilute the differences).
    """
    rng = random.Random(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        rels, sizes = _relpaths(files, rng), _sizes(files, total, rng)
        for i, (rel, size) in enumerate(zip(rels, sizes, strict=True)):
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                name = "src/" + "/".join(parts[:depth])
                if name not in dirs:
                    dirs.add(name)
                    info = tarfile.TarInfo(name)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
                    tar.addfile(info)
            info = tarfile.TarInfo(f"src/{rel}")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(_text(f"tar{i}", size)))
    return path


def volume_relpath(index: int, fanout: int) -> str:
    """Where file ``index`` lives in a fork/commit/mount volume (``d0012/f000345``)."""
    return f"d{index // fanout:04d}/f{index:06d}"


def populate_volume(root: Path, files: int, fanout: int) -> None:
    """Fill a volume with ``files`` small files, ``fanout`` per directory (untimed)."""
    for index in range(files):
        if index % fanout == 0:
            (root / f"d{index // fanout:04d}").mkdir()
        (root / volume_relpath(index, fanout)).write_bytes(_text(f"vol{index}", 100))
