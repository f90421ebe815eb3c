"""Staging PVC names and label values: deterministic, DNS-1123, collision-free."""

from __future__ import annotations

import re

import pytest
from strata_operator.staging.naming import (
    MAX_NAME,
    label_value,
    pvc_name,
    sanitize,
    short_hash,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
HASHED = re.compile(r"-[0-9a-f]{8}$")

NASTY_IDS = [
    ("etl", "scheduled__2026-11-20T00:00:00+00:00"),
    ("Daily_ETL.v2", "manual__2026-01-01T12:34:56.789+05:30"),
    ("dag", "run with spaces / and slashes"),
    ("données", "exécution-été"),
    ("日本語のDAG", "実行"),
    ("😀", "🚀"),
    ("---", "___"),
    ("a" * 300, "b" * 300),
    ("x", "y" * 300),
    ("UPPER", "CASE"),
]


@pytest.mark.parametrize(("dag", "run"), NASTY_IDS)
def test_names_are_dns_labels(dag: str, run: str) -> None:
    name = pvc_name("strata", dag, run)
    assert DNS_LABEL.match(name), name
    assert len(name) <= MAX_NAME
    assert name.startswith("strata-staging-") or name.startswith("strata-staging")


@pytest.mark.parametrize(("dag", "run"), NASTY_IDS)
def test_names_are_deterministic(dag: str, run: str) -> None:
    assert pvc_name("strata", dag, run) == pvc_name("strata", dag, run)


def test_plain_ids_keep_a_readable_name_without_hash() -> None:
    assert pvc_name("strata", "etl", "run42") == "strata-staging-etl-run42"


def test_airflow_run_id_is_readable_and_hashed() -> None:
    name = pvc_name("strata", "etl", "scheduled__2026-11-20T00:00:00+00:00")
    assert name.startswith("strata-staging-etl-scheduled-2026-11-20t00-00-00-00-00-")
    assert HASHED.search(name)
    assert name.endswith(short_hash("etl", "scheduled__2026-11-20T00:00:00+00:00"))


def test_300_character_ids_are_truncated_with_a_hash() -> None:
    name = pvc_name("strata", "a" * 300, "b" * 300)
    assert len(name) == MAX_NAME
    assert HASHED.search(name)
    assert name.startswith("strata-staging-aaaa")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # Sanitising maps both to the same readable text; the hash tells them apart.
        (("etl", "run_1"), ("etl", "run-1")),
        (("etl", "Run1"), ("etl", "run1")),
        (("etl", "run 1"), ("etl", "run.1")),
        (("etl", "é"), ("etl", "e")),
        # The '-' between dag and run is ambiguous on its own.
        (("a-b", "c"), ("a", "b-c")),
        # Truncation keeps only a shared prefix.
        (("d", "x" * 200 + "1"), ("d", "x" * 200 + "2")),
        (("d" * 300, "r"), ("d" * 301, "r")),
    ],
)
def test_runs_that_sanitise_alike_get_different_names(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assert pvc_name("strata", *first) != pvc_name("strata", *second)


def test_many_similar_run_ids_never_collide() -> None:
    runs = [
        f"scheduled__2026-11-{day:02d}T{hour:02d}:00:00+00:00"
        for day in range(1, 31)
        for hour in range(24)
    ]
    runs += [r.replace("+00:00", "Z") for r in runs]
    names = {pvc_name("strata", "etl", r) for r in runs}
    assert len(names) == len(runs)


def test_prefix_is_kept_verbatim() -> None:
    assert pvc_name("acme-ml", "etl", "r1") == "acme-ml-staging-etl-r1"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("scheduled__2026-11-20T00:00:00+00:00", "scheduled-2026-11-20t00-00-00-00-00"),
        ("--Hello__World--", "hello-world"),
        ("café", "cafe"),
        ("日本", ""),
        ("", ""),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


@pytest.mark.parametrize(("dag", "run"), NASTY_IDS)
def test_label_values_are_valid(dag: str, run: str) -> None:
    for raw in (dag, run):
        value = label_value(raw)
        assert LABEL_VALUE.match(value), value
        assert len(value) <= MAX_NAME


def test_label_value_is_the_id_when_already_clean() -> None:
    assert label_value("etl-daily") == "etl-daily"


def test_label_values_of_different_ids_differ() -> None:
    assert label_value("run_1") != label_value("run-1")
    assert label_value("R") != label_value("r")
    assert label_value("日本") != label_value("中国")
    assert label_value("a" * 300) != label_value("a" * 301)


def test_names_are_pinned_across_releases() -> None:
    # Changing the naming would orphan every existing staging PVC on upgrade.
    run = "scheduled__2026-11-20T00:00:00+00:00"
    assert pvc_name("strata", "etl", run) == (
        "strata-staging-etl-scheduled-2026-11-20t00-00-00-00-00-51bb95f0"
    )
    assert label_value(run) == "scheduled-2026-11-20t00-00-00-00-00-f16325f7"
