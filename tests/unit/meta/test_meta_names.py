from __future__ import annotations

import pytest

from strata.errors import InvalidName
from strata.meta.names import check_version_id, check_volume_name, format_ref, parse_ref


@pytest.mark.parametrize("name", ["a", "data", "my-vol-1", "0abc", "a" * 63])
def test_valid_volume_names(name: str) -> None:
    assert check_volume_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "-a", "a-", "a_b", "a.b", "a/b", "a@b", "a" * 64, "vol ume", "é"]
)
def test_invalid_volume_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidName, match="DNS-1123"):
        check_volume_name(name)


def test_parse_ref() -> None:
    assert parse_ref("data") == ("data", None)
    assert parse_ref("data@abcd2345efgh6723") == ("data", "abcd2345efgh6723")
    assert format_ref(*parse_ref("data@x1")) == "data@x1"
    assert format_ref("data", None) == "data"


@pytest.mark.parametrize("ref", ["data@", "@v", "Data@v", "data@v@w", "data@V", ""])
def test_parse_ref_rejects_malformed(ref: str) -> None:
    with pytest.raises(InvalidName):
        parse_ref(ref)


def test_version_id() -> None:
    assert check_version_id("abcd2345efgh6723") == "abcd2345efgh6723"
    with pytest.raises(InvalidName, match="version id"):
        check_version_id("../x")
