"""``strata-operator``: the command line of the Strata operator.

Every flag has a ``STRATA_OPERATOR_*`` environment variable (see
:mod:`strata_operator.settings`); flags win.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

import kopf
from kubernetes import client, config

from strata.units import parse_duration
from strata_operator import app
from strata_operator.settings import Settings, SettingsError

__all__ = ["main", "parse_args"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata-operator",
        description="Reconcile Strata's Volumes, VolumeVersions and StagingVolumes.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="serve this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig path; default: in-cluster, then ~/.kube")
    parser.add_argument("--prefix", help="first part of staging PVC names (default: strata)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="port for /metrics and /healthz (default 8080; 0 picks a free port; -1 disables)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="also serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    parser.add_argument("--sweep-interval", type=float, help="seconds between sweeps (default 30)")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="Strata store for Volumes: file:///path or s3://bucket/prefix?endpoint=…&region=… "
        "(credentials only from the environment, e.g. AWS_ACCESS_KEY_ID from a Secret)",
    )
    parser.add_argument(
        "--gc-interval", help="time between store garbage collections, e.g. 1h (default 1h)"
    )
    parser.add_argument(
        "--gc-grace", help="never sweep objects younger than this, e.g. 1h (default 1h)"
    )
    parser.add_argument(
        "--mirror-interval",
        type=float,
        help="seconds between passes mirroring versions as VolumeVersions (default 5)",
    )
    parser.add_argument(
        "--seal-timeout",
        type=float,
        help="seconds a VolumeVersion waits for a live writer to seal (default 15)",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="skip leader election (only when exactly one replica runs)",
    )
    parser.add_argument(
        "--lease-namespace", help="namespace of the leader Lease (default $POD_NAMESPACE)"
    )
    parser.add_argument("--lease-name", help="name of the leader Lease (default strata-operator)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("-d", "--debug", action="store_true", help="log everything")
    return parser


def _duration(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise SettingsError(f"{flag}: {exc}") from exc


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Settings from the environment overridden by ``argv``."""
    args = _parser().parse_args(argv)
    metrics_port = args.metrics_port
    overrides: dict[str, object] = {
        "namespaces": tuple(args.namespaces)
        if args.namespaces
        else (() if args.all_namespaces else None),
        "kubeconfig": args.kubeconfig,
        "prefix": args.prefix,
        "liveness": args.liveness,
        "sweep_interval": args.sweep_interval,
        "lease_namespace": args.lease_namespace,
        "lease_name": args.lease_name,
        "leader_election": False if args.standalone else None,
        "store": args.store,
        "gc_interval": _duration("--gc-interval", args.gc_interval),
        "gc_grace": _duration("--gc-grace", args.gc_grace),
        "mirror_interval": args.mirror_interval,
        "seal_timeout": args.seal_timeout,
    }
    settings = Settings.from_env(**overrides)
    if metrics_port is not None:
        port = None if metrics_port < 0 else metrics_port
        settings = dataclasses.replace(settings, metrics_port=port)
    return settings, args


def api_client_for(settings: Settings) -> client.ApiClient:
    """An API client from ``--kubeconfig``, else in-cluster, else the default kubeconfig."""
    if settings.kubeconfig:
        return config.new_client_from_config(config_file=settings.kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        return config.new_client_from_config()
    return client.ApiClient()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, args = parse_args(argv)
    except SettingsError as exc:
        print(f"strata-operator: {exc}", file=sys.stderr)
        return 2
    kopf.configure(debug=args.debug, verbose=args.verbose)
    # The API client's connection chatter drowns the operator's own log even with -v.
    logging.getLogger("urllib3").setLevel(logging.INFO if args.debug else logging.WARNING)
    try:
        api_client = api_client_for(settings)
    except config.ConfigException as exc:
        print(f"strata-operator: no Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    with api_client:
        return app.run(settings, api_client)


if __name__ == "__main__":
    sys.exit(main())
