"""Mount options: one validated shape for the CLI, the SDK, CSI attributes and CRs."""

from __future__ import annotations

import pytest

from strata.fs.options import (
    VERSION_CACHE,
    WRITABLE_CACHE,
    InvalidMountOptions,
    MountOptions,
)


def test_defaults_follow_the_seed_api() -> None:
    o = MountOptions()
    assert (o.mount_path, o.max_uploads, o.upload_delay, o.read_only) == (
        "/workspace",
        50,
        None,
        False,
    )
    assert o.cache_timeouts() == (WRITABLE_CACHE,) * 3 == (60.0, 60.0, 60.0)


def test_versions_are_cached_longer_unless_told_otherwise() -> None:
    assert MountOptions(read_only=True).cache_timeouts() == (VERSION_CACHE,) * 3
    assert VERSION_CACHE > WRITABLE_CACHE
    told = MountOptions(read_only=True, attr_cache=5.0, dir_entry_cache=0.0)
    assert told.cache_timeouts() == (5.0, VERSION_CACHE, 0.0)


def test_strings_from_csi_attributes_and_crs_are_converted() -> None:
    o = MountOptions.from_mapping(
        {
            "readOnly": "true",
            "maxUploads": "8",
            "upload_delay": "30s",
            "attrCache": "2m",
            "cacheSize": "1Gi",
        }
    )
    assert (o.read_only, o.max_uploads, o.upload_delay) == (True, 8, 30.0)
    assert o.attr_cache == 120.0 and o.cache_size == 1024**3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"maxUploads": "0"}, "max_uploads must be at least 1"),
        ({"attrCache": "-1"}, "attr_cache"),
        ({"readOnly": "yes"}, "not true or false"),
        ({"cacheSize": "lots"}, "cache_size"),
        ({"mountPaht": "/x"}, "unknown mount option 'mountPaht'"),
    ],
)
def test_bad_values_name_the_option(values: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidMountOptions, match=message):
        MountOptions.from_mapping(values)
