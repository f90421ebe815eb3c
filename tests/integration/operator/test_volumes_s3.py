"""The Volume lifecycle on the real S3-compatible server: credentials come only from
the environment (as from a Secret), never from the store URL or the logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strata.meta.repo import Repository
from strata.store import open_store
from tests.integration.operator.volume_helpers import Objects, commit, object_count

pytestmark = [pytest.mark.k8s, pytest.mark.s3]


def test_volume_mirror_and_fork_on_s3(
    api: Any,
    ns: str,
    s3_bucket: Any,
    operator_factory: Callable[..., Any],
    wait_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    operator_factory(store=s3_bucket.url, mirror_interval=0.3, seal_timeout=3.0)
    repo = Repository.open(open_store(s3_bucket.url))
    objects = Objects(api.custom)
    objects.volume(ns, "s3vol")
    status = wait_for(lambda: objects.ready_volume(ns, "s3vol"), what="Ready on S3")
    store = status["storeVolume"]
    v1 = commit(repo, store, {"model.bin": b"\x00" * 4096}, "weights")
    vv = wait_for(
        lambda: (
            (objects.status(ns, "volumeversions", f"s3vol-{v1.id}") or {}).get("readyToUse")
            and objects.status(ns, "volumeversions", f"s3vol-{v1.id}")
        ),
        what="mirrored on S3",
    )
    assert vv["versionId"] == v1.id and vv["size"] == 4096
    before = object_count(repo)
    objects.volume(ns, "s3fork", source={"volumeVersion": f"s3vol-{v1.id}"})
    fork = wait_for(lambda: objects.ready_volume(ns, "s3fork"), what="fork on S3")
    assert fork["head"] == v1.id
    assert object_count(repo) == before
    assert s3_bucket.secret_key not in caplog.text
