"""What only the S3 backend has to get right: error meanings, secrets, prefixes.

Error mapping is tested with botocore's Stubber (exact S3 error codes, no server);
prefixes and credentials against the real server of the harness.
"""

from __future__ import annotations

import hashlib
import io
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from strata.errors import (
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
    TemporaryStoreError,
)
from strata.store import open_store
from strata.store.s3 import S3Store


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Store, Stubber]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    store = S3Store("bucket", "pre/fix", endpoint="http://127.0.0.1:9", region="us-east-1")
    with Stubber(store._client) as stubber:
        yield store, stubber
        stubber.assert_no_pending_responses()


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


ERRORS = [
    # op, S3 code, HTTP status, engine error, words the message must contain
    ("get_object", "SlowDown", 503, TemporaryStoreError, "SlowDown"),
    ("get_object", "InternalError", 500, TemporaryStoreError, "InternalError"),
    ("get_object", "RequestTimeout", 400, TemporaryStoreError, "RequestTimeout"),
    ("get_object", "Weird5xx", 502, TemporaryStoreError, "HTTP 502"),
    ("get_object", "NoSuchKey", 404, ObjectNotFound, "not found"),
    ("get_object", "AccessDenied", 403, StoreError, "credentials"),
    ("get_object", "NoSuchBucket", 404, StoreError, "bucket 'bucket' does not exist"),
    ("get_object", "InvalidObjectState", 403, StoreError, "InvalidObjectState"),
    ("put_object", "PreconditionFailed", 412, PreconditionFailed, "lost"),
    ("put_object", "ConditionalRequestConflict", 409, PreconditionFailed, "lost"),
    ("put_object", "ServiceUnavailable", 503, TemporaryStoreError, "ServiceUnavailable"),
    ("head_object", "404", 404, ObjectNotFound, "not found"),
    ("delete_object", "SlowDown", 503, TemporaryStoreError, "SlowDown"),
]


@pytest.mark.parametrize(("op", "code", "status", "expected", "words"), ERRORS)
def test_s3_errors_become_engine_errors_that_name_the_object(
    offline: tuple[S3Store, Stubber],
    op: str,
    code: str,
    status: int,
    expected: type[Exception],
    words: str,
) -> None:
    store, stubber = offline
    stubber.add_client_error(op, service_error_code=code, http_status_code=status)
    call: dict[str, Any] = {
        "get_object": lambda: store.get("chunks/aa/k"),
        "put_object": lambda: store.put("chunks/aa/k", b"x", if_absent=True),
        "head_object": lambda: store.head("chunks/aa/k"),
        "delete_object": lambda: store.delete("chunks/aa/k"),
    }
    with pytest.raises(expected) as info:
        call[op]()
    assert type(info.value) is expected
    assert "chunks/aa/k" in str(info.value)
    assert words in str(info.value)


def test_if_match_on_a_missing_object_is_a_lost_race(offline: tuple[S3Store, Stubber]) -> None:
    store, stubber = offline
    stubber.add_client_error("put_object", service_error_code="NoSuchKey", http_status_code=404)
    with pytest.raises(PreconditionFailed, match="does not exist"):
        store.put("heads/v", b"x", if_match="abc")


def test_conditional_headers_are_sent(offline: tuple[S3Store, Stubber]) -> None:
    store, stubber = offline
    etag = f'"{md5(b"x")}"'
    base = {"Bucket": "bucket", "Key": "pre/fix/heads/v", "Body": b"x"}
    stubber.add_response("put_object", {"ETag": etag}, {**base, "IfNoneMatch": "*"})
    stubber.add_response("put_object", {"ETag": etag}, {**base, "IfMatch": '"abc"'})
    stubber.add_response("put_object", {"ETag": etag}, base)
    assert store.put("heads/v", b"x", if_absent=True) == md5(b"x")
    assert store.put("heads/v", b"x", if_match="abc") == md5(b"x")
    assert store.put("heads/v", b"x") == md5(b"x")


def test_a_read_mixing_two_versions_is_refused(offline: tuple[S3Store, Stubber]) -> None:
    """The etag of the new version with the bytes of the old one (versitygw --sidecar)."""
    store, stubber = offline
    stubber.add_response("get_object", {"Body": body(b"old"), "ETag": f'"{md5(b"new")}"'})
    with pytest.raises(TemporaryStoreError, match="not the MD5 of the body"):
        store.get_with_etag("heads/v")
    stubber.add_response("get_object", {"Body": body(b"old"), "ETag": f'"{md5(b"new")}"'})
    assert store.get("heads/v") == b"old"  # no etag handed out, nothing to mix up


def test_opaque_etags_are_not_checked(offline: tuple[S3Store, Stubber]) -> None:
    store, stubber = offline
    kms = {"Body": body(b"x"), "ETag": '"' + "0" * 32 + '"', "ServerSideEncryption": "aws:kms"}
    multipart = {"Body": body(b"x"), "ETag": '"' + "0" * 32 + '-3"'}
    stubber.add_response("get_object", kms)
    stubber.add_response("get_object", multipart)
    assert store.get_with_etag("k") == (b"x", "0" * 32)
    assert store.get_with_etag("k") == (b"x", "0" * 32 + "-3")


def test_a_server_without_md5_etags_turns_the_check_off(
    offline: tuple[S3Store, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    store, stubber = offline
    stubber.add_response("put_object", {"ETag": '"' + "1" * 32 + '"'})
    stubber.add_response("get_object", {"Body": body(b"x"), "ETag": '"' + "1" * 32 + '"'})
    store.put("k", b"x")
    assert "etags are not MD5" in caplog.text
    assert store.get_with_etag("k") == (b"x", "1" * 32)


def test_list_strips_the_prefix(offline: tuple[S3Store, Stubber]) -> None:
    store, stubber = offline
    when = datetime(2026, 1, 1, tzinfo=UTC)
    objects = [
        {"Key": "pre/fix/chunks/a", "Size": 1, "LastModified": when, "ETag": '"e1"'},
        {"Key": "pre/fix/chunks/b", "Size": 2, "LastModified": when, "ETag": '"e2"'},
    ]
    stubber.add_response(
        "list_objects_v2",
        {"Contents": objects, "IsTruncated": False},
        {"Bucket": "bucket", "Prefix": "pre/fix/chunks/"},
    )
    listed = list(store.list("chunks/"))
    assert [(i.key, i.size, i.etag) for i in listed] == [
        ("chunks/a", 1, "e1"),
        ("chunks/b", 2, "e2"),
    ]
    assert listed[0].mtime == when.timestamp()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_temporary_and_tried_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore must not retry on its own: the retry wrapper owns the budget."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    store = S3Store("bucket", endpoint=f"http://127.0.0.1:{closed_port()}", region="us-east-1")
    sends: list[str] = []
    store._client.meta.events.register("before-send.s3.*", lambda **kw: sends.append("x"))
    with pytest.raises(TemporaryStoreError, match="get 'k' in s3://bucket/"):
        store.get("k")
    assert len(sends) == 1


def test_missing_credentials_say_where_they_are_looked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3Store("bucket", endpoint=f"http://127.0.0.1:{closed_port()}", region="us-east-1")
    with pytest.raises(StoreError, match="no usable AWS credentials in the standard chain"):
        store.head("k")


def test_url_and_repr_hold_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    store = S3Store("b", "p", endpoint="http://user:pw@host:9000", region="eu-west-1")
    for text in (store.url, repr(store)):
        assert "AKIDEXAMPLE" not in text
        assert "very-secret-value" not in text
        assert "pw" not in text
    assert store.url == "s3://b/p?endpoint=http://host:9000&region=eu-west-1"


# --- against the real server -------------------------------------------------------


def test_prefixes_isolate_stores_in_one_bucket(s3_bucket: Any) -> None:
    one = S3Store(s3_bucket.bucket, "one", endpoint=s3_bucket.endpoint, region=s3_bucket.region)
    two = S3Store(s3_bucket.bucket, "two", endpoint=s3_bucket.endpoint, region=s3_bucket.region)
    one.put("heads/v", b"1")
    two.put("heads/v", b"2")
    two.put("heads/w", b"2")
    assert one.get("heads/v") == b"1"
    assert [i.key for i in one.list()] == ["heads/v"]
    assert [i.key for i in two.list("heads/")] == ["heads/v", "heads/w"]
    raw = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]
    assert sorted(o["Key"] for o in raw) == ["one/heads/v", "two/heads/v", "two/heads/w"]


def test_open_store_finds_credentials_in_the_standard_chain(s3_bucket: Any) -> None:
    store = open_store(s3_bucket.url)
    store.put("strata.json", b"{}", if_absent=True)
    assert store.get("strata.json") == b"{}"
    assert s3_bucket.secret_key not in store.url
    store.close()


def test_missing_bucket_is_a_clear_permanent_error(s3_bucket: Any) -> None:
    store = S3Store("no-such-bucket-here", endpoint=s3_bucket.endpoint, region=s3_bucket.region)
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist") as info:
        store.get("k")
    assert not isinstance(info.value, TemporaryStoreError)
