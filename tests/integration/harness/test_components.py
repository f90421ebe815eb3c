"""Prove each real component of the harness starts and is really talked to."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from kubernetes import client

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "probes.harness.strata.dev"},
    "spec": {
        "group": "harness.strata.dev",
        "scope": "Namespaced",
        "names": {"plural": "probes", "singular": "probe", "kind": "Probe"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s")


def _crd_established(ext: client.ApiextensionsV1Api) -> bool:
    crd = ext.read_custom_resource_definition(CRD["metadata"]["name"])
    return any(
        c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
    )


def test_apiserver_stores_crd_and_custom_object(kube) -> None:
    ext = client.ApiextensionsV1Api(kube.api_client)
    ext.create_custom_resource_definition(CRD)
    _wait(lambda: _crd_established(ext))
    custom = client.CustomObjectsApi(kube.api_client)
    body = {
        "apiVersion": "harness.strata.dev/v1",
        "kind": "Probe",
        "metadata": {"name": "p1"},
        "spec": {"size": 3},
    }
    # A freshly established CRD can take a moment to be served; retry until it is.
    _wait(lambda: _try_create(custom, body))
    got = custom.get_namespaced_custom_object("harness.strata.dev", "v1", "default", "probes", "p1")
    assert got["spec"] == {"size": 3}
    # The schema is enforced by the real apiserver.
    bad = {**body, "metadata": {"name": "p2"}, "spec": {"size": 0}}
    with pytest.raises(client.ApiException) as err:
        custom.create_namespaced_custom_object("harness.strata.dev", "v1", "default", "probes", bad)
    assert err.value.status == 422
    assert "spec.size" in err.value.body
    version = kube.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36.3"' in version


def _try_create(custom: client.CustomObjectsApi, body: dict) -> bool:
    try:
        custom.create_namespaced_custom_object(
            "harness.strata.dev", "v1", "default", "probes", body
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_s3_server_put_get_and_conditional_put(s3_bucket) -> None:
    s3 = s3_bucket.client()
    s3.put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"one")
    assert s3.get_object(Bucket=s3_bucket.bucket, Key="k")["Body"].read() == b"one"
    # If-None-Match: * refuses to overwrite an existing object.
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    # If-Match succeeds with the current ETag and fails with a stale one.
    etag = s3.head_object(Bucket=s3_bucket.bucket, Key="k")["ETag"]
    s3.put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"three", IfMatch=etag)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"four", IfMatch=etag)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=s3_bucket.bucket, Key="k")["Body"].read() == b"three"


@pytest.mark.fuse
def test_llfuse_mount_write_read_unmount(tmp_path: Path, repo_root: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.memfs", str(mnt)],
        cwd=repo_root,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(lambda: os.path.ismount(mnt) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.stderr.read().decode()
        (mnt / "hello.txt").write_bytes(b"hello fuse")
        assert (mnt / "hello.txt").read_bytes() == b"hello fuse"
        assert os.listdir(mnt) == ["hello.txt"]
        with open("/proc/mounts") as mounts:
            assert any(f" {mnt} fuse" in line for line in mounts)
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], check=False)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not os.path.ismount(mnt)
    assert os.listdir(mnt) == []


def test_csi_sanity_binary_runs(tool) -> None:
    out = subprocess.run([tool("csi-sanity"), "--help"], capture_output=True, text=True, timeout=60)
    assert "csi.endpoint" in out.stdout + out.stderr


def test_helm_binary_runs(tool) -> None:
    out = subprocess.run([tool("helm"), "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "v3.22.0" in out.stdout


def test_console_scripts_are_installed_and_not_yet_pretending() -> None:
    bindir = Path(sys.executable).parent
    for script in ("strata-csi", "strata-device-plugin"):
        result = subprocess.run([bindir / script], capture_output=True, text=True)
        assert result.returncode == 2, (script, result.stderr)
        assert "not yet implemented" in result.stderr
