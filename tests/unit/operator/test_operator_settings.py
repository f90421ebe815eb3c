"""Settings from the environment and the command line, and their validation."""

from __future__ import annotations

import pytest
from strata_operator.main import parse_args
from strata_operator.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings()
    assert settings.prefix == "strata"
    assert settings.clusterwide
    assert settings.leader_election
    assert settings.metrics_port == 8080


def test_environment() -> None:
    env = {
        "STRATA_OPERATOR_PREFIX": "acme",
        "STRATA_OPERATOR_NAMESPACES": "ml, etl ,",
        "STRATA_OPERATOR_SWEEP_INTERVAL": "2.5",
        "STRATA_OPERATOR_METRICS_PORT": "off",
        "STRATA_OPERATOR_LEADER_ELECTION": "false",
        "POD_NAMESPACE": "strata-system",
    }
    settings = Settings.from_env(env)
    assert settings.prefix == "acme"
    assert settings.namespaces == ("ml", "etl")
    assert not settings.clusterwide
    assert settings.sweep_interval == 2.5
    assert settings.metrics_port is None
    assert not settings.leader_election
    assert settings.lease_namespace == "strata-system"


def test_overrides_beat_the_environment() -> None:
    settings = Settings.from_env({"STRATA_OPERATOR_PREFIX": "acme"}, prefix="other")
    assert settings.prefix == "other"


@pytest.mark.parametrize("prefix", ["Strata", "-x", "a_b", "x" * 21, ""])
def test_bad_prefix_is_refused_with_the_rule(prefix: str) -> None:
    with pytest.raises(SettingsError, match="DNS-1123 label"):
        Settings(prefix=prefix)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STRATA_OPERATOR_SWEEP_INTERVAL": "soon"}, "STRATA_OPERATOR_SWEEP_INTERVAL"),
        ({"STRATA_OPERATOR_SWEEP_INTERVAL": "0"}, "sweep interval must be positive"),
        ({"STRATA_OPERATOR_METRICS_PORT": "70000"}, "not a TCP port"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STRATA_OPERATOR_NAMESPACES", "POD_NAMESPACE", "STRATA_OPERATOR_METRICS_PORT"):
        monkeypatch.delenv(var, raising=False)
    settings, args = parse_args(
        [
            "-n",
            "a",
            "--namespace",
            "b",
            "--prefix",
            "acme",
            "--metrics-port",
            "-1",
            "--standalone",
            "-v",
        ]
    )
    assert settings.namespaces == ("a", "b")
    assert settings.prefix == "acme"
    assert settings.metrics_port is None
    assert not settings.leader_election
    assert args.verbose
    settings, _ = parse_args(
        ["--all-namespaces", "--metrics-port", "0", "--lease-namespace", "ops"]
    )
    assert settings.clusterwide
    assert settings.metrics_port == 0
    assert settings.lease_namespace == "ops"


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse_args(["-n", "a", "-A"])
