"""``python -m tests.bench.run [--quick] [--targets …] [--runs N] [--out DIR]``.

Runs every workload on every target in one invocation, interleaved run by run
(workload → run → target) so that machine noise lands on all targets alike, and
checks after every step that the FUSE mounts are still alive. Whatever happens
(an error, Ctrl-C, SIGTERM) every mount is unmounted and partial results are written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from tests.bench import fixtures
from tests.bench.config import BenchConfig
from tests.bench.report import Results, markdown_table, print_table, write_chart, write_json
from tests.bench.system import (
    BenchError,
    MountLost,
    can_drop_caches,
    force_unmount,
    machine_info,
)
from tests.bench.targets import TARGETS, Target, Unsupported
from tests.bench.workloads import MAIN, WORKLOADS, Context, Workload

# Piped output (make, CI logs) would otherwise wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 150)
EXPECTED = (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="sizes 10-100x smaller, for a smoke run (also BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--targets",
        default=os.environ.get("BENCH_TARGETS", "local,strata,juicefs"),
        help="comma-separated subset of: " + ",".join(TARGETS),
    )
    parser.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated subset of: " + ",".join(w.key for w in WORKLOADS),
    )
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where stores, mounts and fixtures go (default: a new dir under /var/tmp)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the workdir afterwards")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.targets) - set(TARGETS) | set(args.workloads) - {w.key for w in WORKLOADS}
    if unknown:
        parser.error(f"unknown target or workload: {', '.join(sorted(unknown))}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into KeyboardInterrupt so the same ``finally`` cleans up."""
    raise KeyboardInterrupt


def run_workload(
    workload: Workload, targets: list[Target], ctx: Context, results: Results, dead: set[str]
) -> None:
    """Prepare, run N times interleaved across targets, finish; record errors per target."""
    active: list[Target] = []
    for target in targets:
        if target.name in dead:
            results.mark(workload, target.name, "error", "skipped: an earlier mount was lost")
            continue
        try:
            workload.prepare(ctx, target)
            active.append(target)
        except Unsupported as exc:
            results.mark(workload, target.name, "n/a", str(exc))
        except EXPECTED as exc:
            fail(workload, target, results, dead, exc)
    for index in range(ctx.config.runs):
        for target in list(active):
            console.print(f"  {workload.key} run {index + 1}/{ctx.config.runs}: {target.name}")
            try:
                results.record(target.name, workload.run(ctx, target, index))
                target.check()
            except Unsupported as exc:
                results.mark(workload, target.name, "n/a", str(exc))
                active.remove(target)
            except EXPECTED as exc:
                fail(workload, target, results, dead, exc)
                active.remove(target)
    for target in active:
        try:
            workload.finish(ctx, target)
            target.check()
        except EXPECTED as exc:
            fail(workload, target, results, dead, exc)


def fail(
    workload: Workload, target: Target, results: Results, dead: set[str], exc: BaseException
) -> None:
    """Record a failure loudly; if a mount died, stop using that target for the rest."""
    note = f"{type(exc).__name__}: {exc}"
    lost = isinstance(exc, MountLost)
    if not lost:
        try:
            target.check()
        except MountLost as lost_exc:
            note, lost = f"{note}; then {lost_exc}", True
    results.mark(workload, target.name, "error", note)
    console.print(f"[bold red]ERROR[/] {target.name} / {workload.title}: {note}")
    if lost:
        dead.add(target.name)
        console.print(f"[bold red]{target.name}: mount lost — its remaining workloads skipped")


def mounts_under(path: Path) -> list[str]:
    """Mount points still inside ``path`` (never delete a tree with a live mount in it)."""
    root = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [p for p in points if p.startswith(root)]


def build_fixtures(cfg: BenchConfig, workdir: Path, selected: list[str]) -> tuple[Path, Path]:
    """The git repository and the tarball (only those the selected workloads use)."""
    repo, tarball = workdir / "fixtures" / "repo", workdir / "fixtures" / "src.tar"
    if "git" in selected:
        console.print(f"building a {cfg.git_files}-file git repository …")
        fixtures.build_git_repo(repo, cfg.git_files, cfg.git_bytes)
    if "tar" in selected:
        console.print(f"building a {cfg.tar_files}-file tarball …")
        fixtures.build_tarball(tarball, cfg.tar_files, cfg.tar_bytes)
    return repo, tarball


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = BenchConfig.quick_config(args.runs) if args.quick else BenchConfig(runs=args.runs)
    signal.signal(signal.SIGTERM, _sigterm)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="strata-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    workloads = [w for w in WORKLOADS if w.key in args.workloads]
    targets = [TARGETS[name](workdir) for name in args.targets]
    results = Results(
        targets=args.targets,
        descriptions={t.name: t.description for t in targets},
        workloads=workloads,
        metrics=[(w.key, m) for w in workloads for m in w.metrics(cfg)],
    )
    title = f"Strata benchmarks ({'quick' if cfg.quick else 'full'}, median of {cfg.runs})"
    if not can_drop_caches():
        console.print("[yellow]not root: caches cannot be dropped; 'cold' results are warm")
    started, interrupted, complete = time.perf_counter(), False, False
    load_at_start = os.getloadavg()  # other work on the machine skews absolute numbers
    ctx: Context | None = None
    try:
        for target in targets:
            target.setup()
        repo, tarball = build_fixtures(cfg, workdir, args.workloads)
        ctx = Context(config=cfg, workdir=workdir, git_repo=repo, tarball=tarball)
        for target in targets:
            target.create_volume(MAIN)
        dead: set[str] = set()
        for workload in workloads:
            console.print(f"[bold]{workload.title}")
            run_workload(workload, targets, ctx, results, dead)
        complete = True
    except BenchError as exc:
        console.print(f"[bold red]bench: {exc}")
        return 2
    except KeyboardInterrupt:
        interrupted = True
        console.print("[bold red]interrupted: unmounting and writing partial results")
    finally:
        for target in targets:
            target.teardown()
        if ctx is not None:
            header = {
                "schema": 1,
                "complete": complete,
                "elapsed_seconds": round(time.perf_counter() - started, 1),
                "machine": machine_info(workdir),
                "config": cfg.as_dict(),
                "load_average_at_start": load_at_start,
                "cold_caches": ctx.cold,
                "random_read_method": "fio (psync, QD1)" if ctx.fio else "python pread loop",
                "fixture_seconds": ctx.fixture_seconds,
            }
            write_json(args.out / "results.json", results.to_json(header))
            (args.out / "results.md").write_text(markdown_table(results))
            print_table(results, console, title)
            if write_chart(results, args.out / "chart.png", title):
                console.print(f"wrote {args.out}/results.json, results.md, chart.png")
            else:
                console.print("[yellow]matplotlib missing: no chart (pip install matplotlib)")
        for point in mounts_under(workdir):  # e.g. a mount that came up after Ctrl-C
            force_unmount(Path(point))
        left = mounts_under(workdir)
        if left:
            console.print(f"[bold red]still mounted, not deleting {workdir}: {left}")
        elif not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
