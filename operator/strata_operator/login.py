"""kopf logs in with the same credentials as the operator's own API client.

kopf would otherwise find credentials by itself (in-cluster, then ~/.kube/config),
which in tests or with ``--kubeconfig`` is a different cluster from the one
:mod:`strata_operator.kube` talks to. One source of credentials keeps them in step.
"""

from __future__ import annotations

import kopf
from kubernetes import client

__all__ = ["connection_info"]


def connection_info(api_client: client.ApiClient) -> kopf.ConnectionInfo:
    """kopf's view of ``api_client``'s server, CA, client certificate and token."""
    config = api_client.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert or None,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file or None,
        private_key_path=config.key_file or None,
    )
