"""A store in an S3 bucket under a prefix (``s3://bucket/prefix?endpoint=…&region=…``).

Works with AWS S3 and S3-compatible servers (versitygw, MinIO, Ceph RGW…).

* **Credentials** come from boto3's standard chain (environment, shared config and
  credentials files, web identity / IRSA, container and instance roles). They are
  never taken from the URL, never logged, and never part of :attr:`S3Store.url`.
* **Conditional writes** are S3's own: ``If-None-Match: *`` for ``if_absent`` and
  ``If-Match: "<etag>"`` for ``if_match`` on PutObject (AWS since 2024). A lost race
  is 412 PreconditionFailed, or 409 ConditionalRequestConflict when two conditional
  writes overlap; both become :class:`~strata.errors.PreconditionFailed`. ``If-Match``
  on a missing object is 404 on AWS; that is a lost race too.
* **Retries are not done here.** botocore's own retries are switched off (one
  attempt) so that :class:`~strata.store.retry.RetryingStore` alone decides, with one
  budget and one set of metrics. This module only says which failures are temporary
  (throttling, 5xx, timeouts, dropped connections) by raising
  :class:`~strata.errors.TemporaryStoreError`.
* **Consistent reads for compare-and-swap.** A CAS loop reads ``(bytes, etag)`` and
  writes ``if_match=etag``; if the etag belongs to a *newer* object than the bytes, a
  stale writer wins and an update is lost. AWS never serves such a mix, but some
  S3-compatible servers read headers and body separately: versitygw 1.8 with
  ``--sidecar`` stores the new etag before it publishes the new data, and its GET
  reads etag and body by path, one after the other (observed: 8 threads × 25 CAS
  increments ended at 145 instead of 200; botocore's CRC32 check did not notice,
  because the checksum matched the old body). So ``get_with_etag`` checks a plain-MD5
  etag (what S3 reports for single-part uploads without SSE-KMS/SSE-C) against the
  body and reports a mismatch as :class:`~strata.errors.TemporaryStoreError`, and
  the read is retried. ``get`` skips the check: without an etag there is nothing to
  mix up, and chunk reads should not pay for an extra hash. Should the server's own
  answer to one of our puts show that its etags are not MD5, the check switches off
  with a warning; until then it fails closed, because a wrong "yes" here moves a head.
* **Addressing** is path-style when an endpoint is given (S3-compatible servers rarely
  have wildcard DNS for virtual-host buckets) and boto's default otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit, urlunsplit

import boto3
import botocore.exceptions as bx
from botocore.config import Config

from strata.errors import (
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
    TemporaryStoreError,
)
from strata.store.base import ObjectInfo, Store
from strata.store.local import validate_key

log = logging.getLogger(__name__)

#: S3 error codes worth retrying: throttling, server-side trouble, slow requests
TEMPORARY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


def _safe_endpoint(endpoint: str) -> str:
    """The endpoint without any ``user:password@`` part, fit for logs and URLs."""
    parts = urlsplit(endpoint)
    if parts.username is None and parts.password is None:
        return endpoint
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class S3Store(Store):
    """Objects in ``bucket`` under ``prefix``; see the module docstring."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        max_connections: int = 64,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not bucket:
            raise ValueError("S3Store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.region = region
        self.url = self._make_url()
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"} if endpoint else None,
            # Checksums on in both directions: integrity in transit. (They do not
            # catch the torn reads described in the module docstring; MD5 does.)
            request_checksum_calculation="when_supported",
            response_checksum_validation="when_supported",
        )
        # A private session: boto3's default session is not safe to create clients
        # from concurrently, and the client itself is thread-safe once made.
        session = boto3.session.Session()
        self._client: Any = session.client(
            "s3", endpoint_url=endpoint, region_name=region, config=config
        )
        self._closed = threading.Event()
        self._etags_are_md5 = True  # until a put shows otherwise; see the docstring

    def _make_url(self) -> str:
        query = {}
        if self.endpoint:
            query["endpoint"] = _safe_endpoint(self.endpoint)
        if self.region:
            query["region"] = self.region
        url = f"s3://{self.bucket}/{self.prefix}"
        # ':' and '/' are legal in a query: keep the endpoint readable in logs.
        return f"{url}?{urlencode(query, safe=':/')}" if query else url

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # --- verbs -------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        return self._get(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        data, resp = self._get(key)
        etag = _etag(resp["ETag"])
        self._check_consistent(key, data, etag, resp)
        return data, etag

    def _get(self, key: str) -> tuple[bytes, dict[str, Any]]:
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            with resp["Body"] as body:
                data = body.read()
        except (bx.ClientError, bx.BotoCoreError) as exc:
            self._raise("get", key, exc)
        return data, resp

    def _check_consistent(self, key: str, data: bytes, etag: str, resp: dict[str, Any]) -> None:
        """Raise TemporaryStoreError if ``etag`` is an MD5 that is not ``data``'s."""
        if not self._etags_are_md5 or not _md5_etag(etag, resp):
            return
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != etag.lower():
            raise TemporaryStoreError(
                f"get {key!r} in {self.url} returned an etag ({etag}) that is not the MD5 of "
                "the body: headers and body of two versions (the object changed during the "
                "read); will retry"
            )

    def _learn_etags(self, data: bytes, etag: str, resp: dict[str, Any]) -> None:
        """Switch the MD5 check off if this server's etags turn out not to be MD5s."""
        if not self._etags_are_md5 or not _md5_etag(etag, resp):
            return
        if hashlib.md5(data, usedforsecurity=False).hexdigest() != etag.lower():
            self._etags_are_md5 = False
            log.warning(
                "%s: the server's etags are not MD5 digests; reads for compare-and-swap are "
                "no longer checked for a mix of two versions",
                self.url,
            )

    def head(self, key: str) -> ObjectInfo:
        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (bx.ClientError, bx.BotoCoreError) as exc:
            self._raise("head", key, exc)
        return ObjectInfo(
            key, resp["ContentLength"], resp["LastModified"].timestamp(), _etag(resp["ETag"])
        )

    def put(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> str:
        if if_absent and if_match is not None:
            raise ValueError("put: pass at most one of if_absent and if_match")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_absent:
            params["IfNoneMatch"] = "*"
        elif if_match is not None:
            params["IfMatch"] = f'"{if_match}"'
        try:
            resp = self._client.put_object(**params)
        except bx.ClientError as exc:
            if if_match is not None and _code(exc) in _NOT_FOUND_CODES:
                raise PreconditionFailed(key, "object does not exist") from exc
            self._raise("put", key, exc)
        except bx.BotoCoreError as exc:
            self._raise("put", key, exc)
        etag = _etag(resp["ETag"])
        self._learn_etags(data, etag, resp)
        return etag

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except bx.ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                return
            self._raise("delete", key, exc)
        except bx.BotoCoreError as exc:
            self._raise("delete", key, exc)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=base + prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(
                        obj["Key"][len(base) :],
                        obj["Size"],
                        obj["LastModified"].timestamp(),
                        _etag(obj.get("ETag", "")),
                    )
        except (bx.ClientError, bx.BotoCoreError) as exc:
            self._raise("list", prefix, exc)

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._client.close()

    # --- errors ------------------------------------------------------------------

    def _raise(self, op: str, key: str, exc: Exception) -> NoReturn:
        """Turn a botocore failure into the engine error that says what it means."""
        what = f"{op} {key!r} in {self.url}"
        if isinstance(exc, bx.ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = exc.response.get("Error", {}).get("Message", "")
            detail = f"S3 {code} (HTTP {status}){': ' + message if message else ''}"
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key, self.url) from exc
            if code in _PRECONDITION_CODES or status == 412:
                raise PreconditionFailed(key, detail) from exc
            if code in TEMPORARY_CODES or status >= 500 or status == 429:
                raise TemporaryStoreError(f"{what} failed, will retry: {detail}") from exc
            if code == "NoSuchBucket":
                raise StoreError(f"{what} failed: bucket {self.bucket!r} does not exist") from exc
            if code in _CREDENTIAL_CODES:
                raise StoreError(
                    f"{what} was refused: {detail}; check the credentials found by the "
                    "standard AWS chain (env, ~/.aws, pod/instance role) and their policy"
                ) from exc
            raise StoreError(f"{what} failed: {detail}") from exc
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            raise StoreError(
                f"{what} failed: no usable AWS credentials in the standard chain (set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or a pod/instance role)"
            ) from exc
        if isinstance(exc, bx.ConnectionError | bx.HTTPClientError | bx.IncompleteReadError):
            # Refused/reset connections, connect and read timeouts, truncated bodies.
            raise TemporaryStoreError(f"{what} failed, will retry: {exc}") from exc
        if isinstance(exc, bx.FlexibleChecksumError):
            # Damaged in transit, or headers and body from two versions of the object.
            raise TemporaryStoreError(
                f"{what} failed, will retry: the body does not match its checksum ({exc})"
            ) from exc
        raise StoreError(f"{what} failed: {exc}") from exc


def _code(exc: bx.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _md5_etag(etag: str, resp: dict[str, Any]) -> bool:
    """Whether S3 promises this etag is the MD5 of the body.

    Not for multipart uploads (``<md5>-<parts>``) and not with SSE-KMS or SSE-C
    encryption, whose etags are opaque.
    """
    if len(etag) != 32 or not all(c in "0123456789abcdefABCDEF" for c in etag):
        return False
    if str(resp.get("ServerSideEncryption", "")).startswith("aws:kms"):
        return False
    return not resp.get("SSECustomerAlgorithm")


def _etag(raw: str) -> str:
    """S3 quotes etags (``"abc…"``); the engine passes them around bare."""
    return raw.strip('"')
