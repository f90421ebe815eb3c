"""Load benchmark of the operator: many StagingVolumes created and expired, many Volumes.

``python -m tests.bench.operator_load [--stagings 1000] [--volumes 200] [--quick] [--out DIR]``
(or ``make bench-operator``) starts a real etcd + kube-apiserver (tests/harness/kube.py),
installs the CRDs and an RWX StorageClass, runs ``strata-operator`` as a *subprocess*
(so its memory is its own and measurable, not mixed with this client's) and measures:

1. **create**: N StagingVolumes (``runPhase: Running``) → time until every one has
   ``status.pvcName`` (its PVC exists; it stays Pending, no provisioner runs here);
2. **expire**: all N patched to ``Succeeded`` with a short TTL → time until every PVC is
   deleted (or has a deletionTimestamp: the pvc-protection finalizer's controller is not
   running) and every StagingVolume is ``Expired``;
3. **volumes**: M Volumes on a ``file://`` store → time until every one is ``Ready``.

Objects are created by a pool of client threads, and the creation rate is reported on
its own, so the operator's throughput is what the completion times measure. Progress is
observed with one LIST per poll (never one GET per object), which keeps the observer's
load on the 2-core test machine small. The operator's RSS is sampled every 0.5 s from
``/proc/<pid>/status``; CPU seconds of the operator, kube-apiserver and etcd are read
from ``/proc/<pid>/stat`` at each phase boundary, which is what tells where the
bottleneck is. ``/metrics`` is scraped before and after every phase.

Everything (operator, apiserver, etcd, temp dirs) is stopped/removed on exit, including
Ctrl-C and SIGTERM. Results: ``<out>/operator-load.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.bench.report import write_json
from tests.bench.system import machine_info
from tests.harness.kube import KubeCluster, start_cluster
from tests.harness.process import Component, free_port, log_tail

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
GROUP, VERSION = "strata.dev", "v1alpha1"
NAMESPACE = "bench"
STORAGE_CLASS = "bench-rwx"
STAGING_SELECTOR = "app.kubernetes.io/managed-by=strata,app.kubernetes.io/component=staging"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- measuring the processes -------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` in bytes, None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (its threads included), None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields_after_comm = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields_after_comm[11]), int(fields_after_comm[12])
    return (utime + stime) / CLK_TCK


class RssSampler:
    """Samples one process's RSS every ``interval`` seconds in a daemon thread.

    A thread rather than reading at phase boundaries, because the peak happens in the
    middle of a phase (watch caches and handler tasks are freed afterwards).
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak(self, since: float = 0.0, until: float = float("inf")) -> int | None:
        values = [v for t, v in self.samples if since <= t <= until]
        return max(values) if values else None

    def last(self) -> int | None:
        return self.samples[-1][1] if self.samples else None


def scrape(url: str) -> dict[str, float]:
    """The operator's Strata metrics as ``{"name{label=value,...}": value}``.

    Only ``strata_operator_*`` samples are kept: they are what the phases change, and
    the process collector's samples would just add noise to the JSON.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("strata_operator_") or sample.name.endswith(
                ("_created", "_bucket")
            ):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def apiserver_requests(cluster: KubeCluster) -> dict[str, float]:
    """kube-apiserver's request counts as ``{"VERB resource": count}`` (all clients).

    Read with ``kubectl get --raw /metrics`` (the admin kubeconfig is allowed to), so the
    requests the operator makes per object can be counted without instrumenting it: the
    difference between two reads minus the benchmark's own requests.
    """
    from prometheus_client.parser import text_string_to_metric_families

    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            resource = sample.labels.get("resource") or sample.labels.get("component", "")
            if sample.labels.get("subresource"):
                resource += "/" + sample.labels["subresource"]
            key = f"{sample.labels.get('verb')} {resource}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def metric_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters that moved between two scrapes (gauges as their new value)."""
    delta: dict[str, float] = {}
    for key, value in after.items():
        if key.startswith(("strata_operator_staging_pvcs_live", "strata_operator_staging_vol")):
            delta[key] = value
        elif value != before.get(key, 0.0):
            delta[key] = value - before.get(key, 0.0)
    return delta


# --- the load ------------------------------------------------------------------------------


@dataclass
class Phase:
    """One phase's outcome; seconds are wall-clock from the phase's first request."""

    name: str
    objects: int
    create_seconds: float = 0.0  # sending the creates/patches (client side only)
    done_seconds: float | None = None  # until every object reached the target state
    done: int = 0  # objects that reached it (== objects unless timed out)
    latency_p50: float | None = None  # per object: from its own request to first seen done
    latency_p95: float | None = None
    latency_max: float | None = None
    request_errors: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    rss_peak_bytes: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    #: kube-apiserver requests during the phase by "VERB resource", every client included
    #: (the benchmark's own: one create/patch per object plus one LIST per poll).
    apiserver_requests: dict[str, float] = field(default_factory=dict)
    note: str = ""
    wait_seconds: float = 0.0  # a deliberate wait inside done_seconds (the expiry TTL)

    @property
    def request_rate(self) -> float | None:
        return self.objects / self.create_seconds if self.create_seconds else None

    @property
    def throughput(self) -> float | None:
        """Objects per second, end to end: the operator's sustained rate under load."""
        if self.done_seconds is None or self.done_seconds <= 0:
            return None
        return self.done / self.done_seconds

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["request_rate_per_s"] = self.request_rate
        data["throughput_per_s"] = self.throughput
        if self.wait_seconds and self.done_seconds and self.done_seconds > self.wait_seconds:
            # The rate the operator drained at once the TTL let it start: the raw rate
            # above is diluted by a wait nobody can make shorter.
            data["throughput_excluding_wait_per_s"] = self.done / (
                self.done_seconds - self.wait_seconds
            )
        return data


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fan_out(
    calls: Iterable[tuple[str, Callable[[], object]]], threads: int, sent: dict[str, float]
) -> int:
    """Run ``calls`` (name, fn) on ``threads`` client threads; record each send time.

    Returns the number of failed calls (each is printed once): a benchmark should show
    what went wrong rather than stop at the first 409/429.
    """
    errors = 0
    lock = threading.Lock()

    def one(item: tuple[str, Callable[[], object]]) -> None:
        nonlocal errors
        name, call = item
        sent[name] = time.monotonic()
        try:
            call()
        except Exception as exc:  # counted and reported: one 409/429 must not end the run
            with lock:
                errors += 1
                if errors <= 5:
                    print(f"request for {name} failed: {exc}", file=sys.stderr)

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-client")
    try:
        list(pool.map(one, calls))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return errors


def wait_until(
    done_names: Callable[[], set[str]],
    names: set[str],
    first_seen: dict[str, float],
    timeout: float,
    interval: float,
    progress: Callable[[int], None],
) -> bool:
    """Poll ``done_names()`` (one LIST) until it covers ``names``; record first-seen times."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        for name in done_names() & names:
            first_seen.setdefault(name, now)
        progress(len(first_seen))
        if len(first_seen) >= len(names):
            return True
        if now > deadline:
            return False
        time.sleep(interval)


class Load:
    """The three phases against one cluster and one operator process."""

    def __init__(
        self,
        cluster: KubeCluster,
        threads: int,
        timeout: float,
        interval: float,
        console: Console,
    ) -> None:
        from kubernetes import client, config

        # A connection per client thread: the default pool (cores x 5) would make the
        # threads queue for connections on a 2-core machine.
        configuration = client.Configuration()
        config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = threads + 2
        self.api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.threads = threads
        self.timeout = timeout
        self.interval = interval
        self.console = console

    def _list(self, plural: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)["items"]

    def _progress(self, what: str, total: int, start: float) -> Callable[[int], None]:
        last = [-1]

        def show(count: int) -> None:
            if count != last[0]:
                last[0] = count
                self.console.print(
                    f"  {what}: {count}/{total} after {time.monotonic() - start:6.1f}s",
                    highlight=False,
                )

        return show

    def _finish(
        self, phase: Phase, start: float, sent: dict[str, float], first_seen: dict[str, float]
    ) -> None:
        phase.done = len(first_seen)
        if phase.done == phase.objects:
            phase.done_seconds = max(first_seen.values()) - start
        else:
            phase.note = f"timed out after {self.timeout:.0f}s with {phase.done} done"
        latencies = [first_seen[n] - sent[n] for n in first_seen if n in sent]
        phase.latency_p50 = percentile(latencies, 0.5)
        phase.latency_p95 = percentile(latencies, 0.95)
        phase.latency_max = max(latencies) if latencies else None

    def create_stagings(self, count: int) -> Phase:
        phase = Phase("create StagingVolumes", count)
        names = {f"sv-{i:05d}" for i in range(count)}

        def create(name: str) -> Callable[[], object]:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "StagingVolume",
                "metadata": {"name": name},
                "spec": {
                    "dagId": "bench",
                    "runId": name,
                    "storageClassName": STORAGE_CLASS,
                    "runPhase": "Running",
                },
            }
            return lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "stagingvolumes", body
            )

        def reconciled() -> set[str]:
            return {
                sv["metadata"]["name"]
                for sv in self._list("stagingvolumes")
                if (sv.get("status") or {}).get("pvcName")
            }

        self._run(phase, names, create, reconciled, "reconciled (status.pvcName)")
        return phase

    def expire_stagings(self, count: int, ttl: int) -> Phase:
        phase = Phase("expire StagingVolumes", count, wait_seconds=ttl)
        names = {f"sv-{i:05d}" for i in range(count)}

        def patch(name: str) -> Callable[[], object]:
            spec = {"spec": {"runPhase": "Succeeded", "ttlSecondsAfterFinished": ttl}}
            return lambda: self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                "stagingvolumes",
                name,
                spec,
                _content_type="application/merge-patch+json",
            )

        def expired() -> set[str]:
            # A PVC counts as deleted once it has a deletionTimestamp: the pvc-protection
            # finalizer is removed by the controller-manager, which does not run here.
            live = {
                pvc.metadata.annotations.get("strata.dev/staging-volume")
                for pvc in self.core.list_namespaced_persistent_volume_claim(
                    NAMESPACE, label_selector=STAGING_SELECTOR
                ).items
                if pvc.metadata.deletion_timestamp is None
            }
            return {
                sv["metadata"]["name"]
                for sv in self._list("stagingvolumes")
                if (sv.get("status") or {}).get("phase") == "Expired"
                and sv["metadata"]["name"] not in live
            }

        self._run(phase, names, patch, expired, "expired (PVC deleted, phase Expired)")
        phase.note = (phase.note + "; " if phase.note else "") + (
            f"includes the {ttl}s TTL and up to one sweep interval"
        )
        return phase

    def create_volumes(self, count: int) -> Phase:
        phase = Phase("create Volumes", count)
        names = {f"vol-{i:05d}" for i in range(count)}

        def create(name: str) -> Callable[[], object]:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Volume",
                "metadata": {"name": name},
                "spec": {},
            }
            return lambda: self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "volumes", body
            )

        def ready() -> set[str]:
            return {
                v["metadata"]["name"]
                for v in self._list("volumes")
                if (v.get("status") or {}).get("phase") == "Ready"
            }

        self._run(phase, names, create, ready, "Ready")
        return phase

    def _run(
        self,
        phase: Phase,
        names: set[str],
        request: Callable[[str], Callable[[], object]],
        done: Callable[[], set[str]],
        what: str,
    ) -> None:
        """Send the requests from a background thread while polling for completion.

        Polling starts with the first request, so an operator keeping pace with the
        clients is timed as such, not as "done the moment the clients finished".
        """
        self.console.print(f"[bold]{phase.name}[/]: {phase.objects} objects", highlight=False)
        sent: dict[str, float] = {}
        first_seen: dict[str, float] = {}
        start = time.monotonic()
        outcome: dict[str, Any] = {}

        def send() -> None:
            outcome["errors"] = fan_out(
                ((n, request(n)) for n in sorted(names)), self.threads, sent
            )
            outcome["seconds"] = time.monotonic() - start

        sender = threading.Thread(target=send, name="bench-sender", daemon=True)
        sender.start()
        wait_until(
            done,
            names,
            first_seen,
            self.timeout,
            self.interval,
            self._progress(what, phase.objects, start),
        )
        sender.join()
        phase.create_seconds = outcome.get("seconds", 0.0)
        phase.request_errors = outcome.get("errors", 0)
        self._finish(phase, start, sent, first_seen)


# --- set-up and tear-down ------------------------------------------------------------------


def install(cluster: KubeCluster) -> None:
    """CRDs (Established), the namespace and an RWX StorageClass (the NFS CSI provisioner,
    which is on the operator's allow-list)."""
    cluster.kubectl("apply", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    manifest = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {STORAGE_CLASS}}}
provisioner: nfs.csi.k8s.io
"""
    cluster.kubectl("apply", "-f", "-", input=manifest)


def start_operator(
    cluster: KubeCluster, workdir: Path, metrics_port: int, sweep_interval: float
) -> Component:
    """``strata-operator`` as its own process (own session, log in ``workdir``)."""
    script = Path(sys.executable).with_name("strata-operator")
    operator = Component(
        "strata-operator",
        [
            script,
            "--kubeconfig",
            cluster.kubeconfig,
            "--namespace",
            NAMESPACE,
            "--standalone",
            "--metrics-port",
            str(metrics_port),
            "--sweep-interval",
            str(sweep_interval),
            "--store",
            f"file://{workdir / 'store'}",
        ],
        workdir / "operator",
    )
    health = f"http://127.0.0.1:{metrics_port}/healthz"

    def healthy() -> bool:
        with urllib.request.urlopen(health, timeout=2) as resp:
            return resp.status == 200

    operator.wait_ready(healthy, timeout=60, what="healthy (/healthz)")
    return operator


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop every process.

    SIGINT gets Python's handler back too: a shell starts background jobs with SIGINT
    ignored, and an ignored SIGINT would leave the cluster running after ``kill -INT``.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


# --- report --------------------------------------------------------------------------------


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def operator_writes_per_object(phase: dict[str, Any]) -> float | None:
    """API writes (POST/PUT/PATCH/DELETE) per object, less the benchmark's own one.

    Writes, not reads, because the benchmark's polling LISTs are reads and each write
    is a round trip the operator waits for: the count is the cost model of a reconcile.
    """
    if not phase["objects"]:
        return None
    writes = sum(
        v
        for k, v in phase["apiserver_requests"].items()
        if k.split(" ", 1)[0] in ("POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE")
    )
    return (writes - phase["objects"]) / phase["objects"]


def print_report(console: Console, result: dict[str, Any]) -> None:
    table = Table(title="Operator load", title_justify="left")
    for column in (
        "phase",
        "objects",
        "requests/s",
        "done in",
        "operator/s",
        "excl. TTL",
        "p50",
        "p95",
        "CPU s op/api/etcd",
        "RSS peak",
        "op. writes/obj",
        "errors",
    ):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in result["phases"]:
        cpu = phase["cpu_seconds"]
        errors = sum(v for k, v in phase["metrics"].items() if "errors_total" in k)
        table.add_row(
            phase["name"],
            f"{phase['done']}/{phase['objects']}",
            fmt(phase["request_rate_per_s"]),
            fmt(phase["done_seconds"], " s"),
            fmt(phase["throughput_per_s"]),
            fmt(phase.get("throughput_excluding_wait_per_s")),
            fmt(phase["latency_p50"], " s"),
            fmt(phase["latency_p95"], " s"),
            "/".join(fmt(cpu.get(k), digits=0) for k in ("operator", "apiserver", "etcd")),
            mib(phase["rss_peak_bytes"]),
            fmt(operator_writes_per_object(phase)),
            f"{phase['request_errors']}+{errors:.0f}",
        )
    console.print(table)
    memory = result["operator_memory"]
    console.print(
        f"operator RSS: idle {mib(memory['idle_bytes'])}, peak {mib(memory['peak_bytes'])}, "
        f"final {mib(memory['final_bytes'])} ({memory['samples']} samples every 0.5 s)",
        highlight=False,
    )
    for phase in result["phases"]:
        if phase["note"]:
            console.print(f"  {phase['name']}: {phase['note']}", highlight=False)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.operator_load",
        description="Operator load test: StagingVolumes created and expired, Volumes created.",
    )
    parser.add_argument("--stagings", type=int, help="StagingVolumes (default 1000)")
    parser.add_argument("--volumes", type=int, help="Volumes (default 200)")
    parser.add_argument("--quick", action="store_true", help="100 StagingVolumes, 20 Volumes")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--ttl", type=int, default=5, help="ttlSecondsAfterFinished (5)")
    parser.add_argument("--sweep-interval", type=float, default=1.0, help="seconds (1)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per phase before giving up (900)"
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between LISTs (0.5)")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="idle seconds before the final RSS (15)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    args.stagings = args.stagings if args.stagings is not None else (100 if args.quick else 1000)
    args.volumes = args.volumes if args.volumes is not None else (20 if args.quick else 200)
    return args


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Start everything, run the phases, always stop everything; return the results."""
    workdir = Path(tempfile.mkdtemp(prefix="strata-operator-load-", dir="/var/tmp"))
    cluster: KubeCluster | None = None
    operator: Component | None = None
    sampler: RssSampler | None = None
    try:
        console.print(f"starting etcd + kube-apiserver in {workdir}", highlight=False)
        cluster = start_cluster(workdir / "cluster")
        install(cluster)
        port = free_port()
        operator = start_operator(cluster, workdir, port, args.sweep_interval)
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        pids = {
            "operator": operator.proc.pid,
            **{c.name: c.proc.pid for c in cluster.components},
        }
        pids["apiserver"] = pids.pop("kube-apiserver", 0)
        sampler = RssSampler(operator.proc.pid).start()
        time.sleep(3)  # let the operator's watches settle: the idle RSS is a baseline
        idle = rss_bytes(operator.proc.pid)
        load = Load(cluster, args.threads, args.timeout, args.poll, console)
        phases: list[Phase] = []
        plan: list[Callable[[], Phase]] = []
        if args.stagings:
            plan.append(lambda: load.create_stagings(args.stagings))
            plan.append(lambda: load.expire_stagings(args.stagings, args.ttl))
        if args.volumes:
            plan.append(lambda: load.create_volumes(args.volumes))
        metrics_before = scrape(metrics_url)
        first_metrics = metrics_before
        requests_before = apiserver_requests(cluster)
        for step in plan:
            cpu_before = {k: cpu_seconds(p) or 0.0 for k, p in pids.items()}
            t0 = time.monotonic()
            phase = step()
            if operator.proc.poll() is not None:
                raise RuntimeError(
                    f"the operator exited ({operator.proc.returncode}):\n"
                    f"{log_tail(operator.log_path)}"
                )
            phase.cpu_seconds = {
                k: round((cpu_seconds(p) or 0.0) - cpu_before[k], 2) for k, p in pids.items()
            }
            phase.rss_peak_bytes = sampler.peak(since=t0)
            requests_after = apiserver_requests(cluster)
            phase.apiserver_requests = {
                k: v - requests_before.get(k, 0.0)
                for k, v in sorted(requests_after.items())
                if v != requests_before.get(k, 0.0)
            }
            requests_before = requests_after
            metrics_after = scrape(metrics_url)
            phase.metrics = metric_delta(metrics_before, metrics_after)
            metrics_before = metrics_after
            phases.append(phase)
        # Idle a while after the last phase: whether the RSS comes back down (caches
        # freed) or stays (kept per object, or a leak) is part of the memory story.
        time.sleep(args.settle)
        return {
            "benchmark": "operator-load",
            "args": {
                "stagings": args.stagings,
                "volumes": args.volumes,
                "threads": args.threads,
                "ttl_seconds": args.ttl,
                "sweep_interval": args.sweep_interval,
                "poll_interval": args.poll,
                "settle_seconds": args.settle,
                "quick": args.quick,
            },
            "phases": [p.as_json() for p in phases],
            "operator_memory": {
                "idle_bytes": idle,
                "peak_bytes": sampler.peak(),
                "final_bytes": sampler.last(),
                "samples": len(sampler.samples),
            },
            "metrics_total": metric_delta(first_metrics, metrics_before),
            "machine": machine_info(workdir),
        }
    finally:
        if sampler is not None:
            sampler.stop()
        if operator is not None:
            operator.stop()
        if cluster is not None:
            cluster.stop()
        if args.keep:
            console.print(f"kept {workdir}", highlight=False)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if console.width < 140:  # not a wide terminal (or not a terminal): keep rows on one line
        console = Console(width=140)
    with sigterm_as_interrupt():
        try:
            result = run(args, console)
        except KeyboardInterrupt:
            console.print("[red]interrupted[/]: operator and cluster stopped")
            return 130
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "operator-load.json"
    write_json(path, result)
    print_report(console, result)
    console.print(f"wrote {path}", highlight=False)
    complete = all(p["done"] == p["objects"] for p in result["phases"])
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
