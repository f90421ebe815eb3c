"""The `strata` CLI as a user runs it: a real process, on a local and a real S3 store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STRATA = [sys.executable, "-m", "strata.cli.main"]


class Cli:
    def __init__(self, store: str, tmp: Path) -> None:
        self.store = store
        self.tmp = tmp
        self.env = {
            **os.environ,
            "STRATA_STORE": store,
            "STRATA_CACHE_DIR": str(tmp / "cache"),
            "STRATA_LOG_DIR": str(tmp / "logs"),
        }

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*STRATA, *args], capture_output=True, text=True, env=self.env, timeout=120
        )
        if ok:
            assert proc.returncode == 0, f"strata {' '.join(args)}: {proc.stderr}"
        else:
            assert proc.returncode != 0, f"strata {' '.join(args)} should fail"
            assert "Traceback" not in proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        return proc

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)

    def write_version(self, volume: str, files: dict[str, str], message: str) -> str:
        """Mount, write ``files``, finalize: returns the new version ref."""
        mnt = self.tmp / f"mnt-{volume}"
        self.run("mount", volume, str(mnt))
        try:
            for name, text in files.items():
                path = mnt / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            return self.run("finalize", str(mnt), "-m", message).stdout.strip().splitlines()[-1]
        except BaseException:
            subprocess.run(["fusermount", "-uz", str(mnt)], check=False)
            raise


@pytest.fixture(params=["local", "s3"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    if request.param == "local":
        return Cli(f"file://{tmp_path / 'store'}", tmp_path)
    bucket = request.getfixturevalue("s3_bucket")
    return Cli(bucket.url, tmp_path)


@pytest.mark.fuse
def test_volume_lifecycle(cli: Cli) -> None:
    assert cli.run("volume", "create", "data").stdout.strip() == "created volume data"
    v1 = cli.write_version("data", {"a.txt": "one", "dir/b.txt": "two"}, "first")
    v2 = cli.write_version("data", {"a.txt": "ONE", "c.txt": "three"}, "second")
    assert v1.startswith("data@") and v2.startswith("data@")

    log = cli.json("volume", "log", "data")
    assert [e["ref"] for e in log] == [v2, v1]
    assert [e["message"] for e in log] == ["second", "first"]
    assert log[0]["parent"] == v1 and log[1]["parent"] is None
    assert log[0]["files"] == 3

    table = cli.run("volume", "log", "data").stdout
    assert v1 in table and "first" in table

    assert cli.json("volume", "diff", v1, v2) == {
        "added": ["c.txt"],
        "removed": [],
        "modified": ["a.txt"],
    }

    cli.run("volume", "fork", v1, "copy")
    listing = {row["volume"]: row for row in cli.json("volume", "list")}
    assert listing["copy"]["head"] == v1
    assert listing["data"]["head"] == v2
    assert [e["ref"] for e in cli.json("volume", "log", "copy")] == [v1]

    cli.run("volume", "delete", "data")
    assert [row["volume"] for row in cli.json("volume", "list")] == ["copy"]
    # The fork still needs v1: its history survives the source's deletion.
    assert [e["ref"] for e in cli.json("volume", "log", "copy")] == [v1]

    dry = cli.json("gc", "--grace", "0s", "--dry-run")
    assert dry["objects_freed"] > 0  # v2's chunks and trees are garbage now
    freed = cli.json("gc", "--grace", "0s")
    assert freed["objects_freed"] == dry["objects_freed"]
    assert cli.json("gc", "--grace", "0s")["objects_freed"] == 0

    # Everything the fork needs is still readable after GC.
    mnt = cli.tmp / "ro"
    cli.run("mount", v1, str(mnt))
    try:
        assert (mnt / "a.txt").read_text() == "one"
        assert (mnt / "dir" / "b.txt").read_text() == "two"
    finally:
        cli.run("umount", str(mnt))


def test_errors_are_one_line_and_nonzero(tmp_path: Path) -> None:
    cli = Cli(f"file://{tmp_path / 'store'}", tmp_path)
    cli.run("volume", "create", "v")
    assert "already exists" in cli.run("volume", "create", "v", ok=False).stderr
    assert "DNS-1123" in cli.run("volume", "create", "Not_Valid", ok=False).stderr
    assert "does not exist" in cli.run("volume", "log", "nope", ok=False).stderr
    assert "does not exist" in cli.run("volume", "fork", "v@aaaaaaaaaaaaaaaa", "w", ok=False).stderr
    assert "accepted forms" in cli.run("--store", "ftp://x", "volume", "list", ok=False).stderr
    assert "not valid" in cli.run("gc", "--grace", "soon", ok=False).stderr


def test_unreachable_store_is_reported_after_retries(tmp_path: Path) -> None:
    env_store = "s3://bucket-x/p?endpoint=http://127.0.0.1:9&region=us-east-1"
    cli = Cli(env_store, tmp_path)
    cli.env.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    err = cli.run("volume", "list", ok=False).stderr
    assert "failed after" in err and "attempts" in err
