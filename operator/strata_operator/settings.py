"""Operator settings: defaults, then environment (``STRATA_OPERATOR_*``), then CLI flags.

Settings are one immutable value handed to everything that needs them, never read from
globals, so tests run several differently-configured operators in one process.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from strata.units import parse_duration

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "redact_url"]

ENV_PREFIX = "STRATA_OPERATOR_"
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_PREFIX = 20  # leaves room in a 63-character PVC name for "-staging-", ids and a hash


class SettingsError(ValueError):
    """A setting has an unusable value; the message names the setting and the fix."""


def _identity() -> str:
    """Who holds the leader Lease: the pod name (hostname) plus a per-process suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one operator process."""

    #: First part of every staging PVC name: ``<prefix>-staging-<dag>-<run>``.
    prefix: str = "strata"
    #: Namespaces to serve; empty means every namespace (cluster-wide).
    namespaces: tuple[str, ...] = ()
    #: Seconds between sweeps of expired and orphaned staging PVCs.
    sweep_interval: float = 30.0
    #: Port of the /metrics + /healthz HTTP server; 0 picks a free port, None disables it.
    metrics_port: int | None = 8080
    #: kopf's own liveness endpoint URL (``--liveness``), served once leading; None: off.
    liveness: str | None = None
    #: Path of a kubeconfig; None uses the in-cluster service account, then ~/.kube/config.
    kubeconfig: str | None = None
    #: Take the leader Lease before acting, so only one replica reconciles and sweeps.
    leader_election: bool = True
    lease_name: str = "strata-operator"
    lease_namespace: str = "default"
    #: Seconds a Lease stays valid without renewal; standbys take over after this.
    lease_duration: float = 15.0
    identity: str = field(default_factory=_identity)
    #: Strata store URL (``file:///…`` or ``s3://bucket/prefix?endpoint=…&region=…``) that
    #: holds Volumes; None leaves Volumes and VolumeVersions unreconciled. Credentials
    #: never go here: the S3 client reads them from the environment (a Secret).
    store: str | None = field(default=None, repr=False)
    #: Seconds between store garbage collections (retention, then mark-and-sweep).
    gc_interval: float = 3600.0
    #: Unreferenced objects younger than this many seconds are never swept (in-flight
    #: uploads); the engine's default, one hour.
    gc_grace: float = 3600.0
    #: Seconds between passes that mirror sealed versions as VolumeVersions and refresh
    #: Volume status (head, size, writer).
    mirror_interval: float = 5.0
    #: Seconds a VolumeVersion's seal request waits for a live writer to answer.
    seal_timeout: float = 15.0

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix) or len(self.prefix) > MAX_PREFIX:
            raise SettingsError(
                f"prefix {self.prefix!r} must be a DNS-1123 label of at most {MAX_PREFIX} "
                "characters (lowercase letters, digits and '-')"
            )
        if self.sweep_interval <= 0:
            raise SettingsError(f"sweep interval must be positive, not {self.sweep_interval}")
        if self.lease_duration <= 0:
            raise SettingsError(f"lease duration must be positive, not {self.lease_duration}")
        for name in ("gc_interval", "mirror_interval", "seal_timeout"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.replace('_', ' ')} must be positive")
        if self.gc_grace < 0:
            raise SettingsError(f"gc grace must be 0 or more seconds, not {self.gc_grace}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise SettingsError(f"metrics port {self.metrics_port} is not a TCP port")

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def store_display(self) -> str:
        """The store URL safe to log: no userinfo, no query values (never credentials)."""
        return redact_url(self.store) if self.store else "(none)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``STRATA_OPERATOR_<FIELD>`` variables, then ``overrides``.

        ``STRATA_OPERATOR_NAMESPACES`` is comma-separated; the Lease namespace falls back
        to ``POD_NAMESPACE`` (the Downward API), which is where the operator runs.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get("POD_NAMESPACE"):
            values["lease_namespace"] = env["POD_NAMESPACE"]
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def redact_url(url: str) -> str:
    """``url`` without a ``user:password@`` part or query values, for logs and Events."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(f"{k}=…" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _parse(name: str, raw: str) -> object:
    """Convert one environment string to the field's type."""
    try:
        if name == "namespaces":
            return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
        if name in ("sweep_interval", "lease_duration", "mirror_interval", "seal_timeout"):
            return float(raw)
        if name in ("gc_interval", "gc_grace"):
            return parse_duration(raw)
        if name == "store":
            return raw.strip() or None
        if name == "metrics_port":
            return None if raw.strip().lower() in ("", "off", "none") else int(raw)
        if name == "leader_election":
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from exc
    return raw
