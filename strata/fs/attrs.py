"""Translate the working state's value types into llfuse's."""

from __future__ import annotations

import llfuse

from strata.meta.working.types import Attr, StatFs

BLOCK_SIZE = 4096
#: statfs capacity reported for an object-store-backed volume (it has no fixed size)
VIRTUAL_CAPACITY = 1 << 50


def entry_attributes(
    attr: Attr, attr_timeout: float, entry_timeout: float
) -> llfuse.EntryAttributes:
    out = llfuse.EntryAttributes()
    out.st_ino = attr.ino
    out.generation = 0
    out.entry_timeout = entry_timeout
    out.attr_timeout = attr_timeout
    out.st_mode = attr.st_mode
    out.st_nlink = attr.nlink
    out.st_uid = attr.uid
    out.st_gid = attr.gid
    out.st_rdev = 0
    out.st_size = attr.size
    out.st_blksize = BLOCK_SIZE
    out.st_blocks = attr.blocks
    out.st_atime_ns = attr.atime_ns
    out.st_mtime_ns = attr.mtime_ns
    out.st_ctime_ns = attr.ctime_ns
    return out


def statvfs(totals: StatFs) -> llfuse.StatvfsData:
    out = llfuse.StatvfsData()
    used_blocks = (totals.bytes + BLOCK_SIZE - 1) // BLOCK_SIZE
    total_blocks = VIRTUAL_CAPACITY // BLOCK_SIZE
    out.f_bsize = BLOCK_SIZE
    out.f_frsize = BLOCK_SIZE
    out.f_blocks = total_blocks
    out.f_bfree = max(total_blocks - used_blocks, 0)
    out.f_bavail = out.f_bfree
    out.f_files = totals.files + totals.dirs + (1 << 30)
    out.f_ffree = 1 << 30
    out.f_favail = out.f_ffree
    out.f_namemax = 255
    return out
