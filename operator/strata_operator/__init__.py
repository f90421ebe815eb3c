"""The Strata operator (kopf): Volume, VolumeVersion and StagingVolume.

Modules, by what they do:

* ``main``      — the ``strata-operator`` command line;
* ``app``       — metrics server, leader election, then kopf;
* ``handlers``  — thin kopf handlers, registered around one ``Deps``;
* ``kube``      — every Kubernetes API call, as a small set of verbs;
* ``leader``    — Lease-based leader election (one acting replica);
* ``metrics``   — Prometheus metrics and /healthz;
* ``events``    — Kubernetes Events for what users must see;
* ``settings``  — configuration from environment and flags;
* ``staging``   — StagingVolume naming, storage classes, reconcile and the sweeper;
* ``volumes``   — Volume/VolumeVersion store naming, reconcilers, the mirror loop and
  store GC (needs ``--store``).
"""

from strata_operator.app import kopf_settings, run
from strata_operator.deps import Deps
from strata_operator.handlers import build_registry
from strata_operator.settings import Settings

__all__ = ["Deps", "Settings", "build_registry", "kopf_settings", "run"]
