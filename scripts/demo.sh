#!/usr/bin/env bash
# The main job, narrated: create, mount, write, commit, change, finalize, fork, mount the
# fork, history and diff — on the embedded local directory store, with real FUSE mounts.
set -euo pipefail

STRATA=${STRATA:-.venv/bin/strata}
work=$(mktemp -d /tmp/strata-demo.XXXXXX)
export STRATA_STORE="file://$work/store" STRATA_CACHE_DIR="$work/cache" STRATA_LOG_DIR="$work/logs"

cleanup() {
  for m in "$work"/mnt/*; do
    if mountpoint -q "$m" 2>/dev/null; then fusermount -u "$m" 2>/dev/null || fusermount -uz "$m"; fi
  done
}
trap cleanup EXIT

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() { printf '\033[36m$ %s\033[0m\n' "$*"; "$@"; }
strata() { printf '\033[36m$ strata %s\033[0m\n' "$*"; "$STRATA" "$@"; }

say "A store is a directory (or an S3 bucket). This demo uses $STRATA_STORE"
strata volume create notes

say "Mount the volume like a local directory and write to it"
mkdir -p "$work/mnt"
strata mount notes "$work/mnt/notes"
run mkdir "$work/mnt/notes/ideas"
printf 'Strata: volumes that fork.\n' >"$work/mnt/notes/README"
printf 'fork is O(1)\n' >"$work/mnt/notes/ideas/one.txt"
run ls -lR "$work/mnt/notes"

say "Seal a version while the mount stays live (prints the new version)"
v1=$(strata commit "$work/mnt/notes" -m "first draft" | tail -n 1)
echo "$v1"

say "Change something, then finalize: commit, flush and unmount"
printf 'commit is O(change)\n' >"$work/mnt/notes/ideas/two.txt"
printf 'Strata: volumes that fork, cheaply.\n' >"$work/mnt/notes/README"
v2=$(strata finalize "$work/mnt/notes" -m "second draft" | tail -n 1)
echo "$v2"

say "History of notes"
strata volume log notes

say "Fork the FIRST version into a new volume: no data is copied"
strata volume fork "$v1" experiment

say "Mount the fork: it starts exactly at $v1"
strata mount experiment "$work/mnt/experiment"
run cat "$work/mnt/experiment/README"
run ls "$work/mnt/experiment/ideas"
printf 'what if...\n' >"$work/mnt/experiment/ideas/wild.txt"
v3=$(strata finalize "$work/mnt/experiment" -m "an experiment" | tail -n 1)
echo "$v3"

say "Old versions stay mountable, read-only"
strata mount "$v1" "$work/mnt/v1"
run cat "$work/mnt/v1/README"
if touch "$work/mnt/v1/new" 2>/dev/null; then echo "unexpected: wrote to a sealed version" >&2; exit 1; fi
echo "writing to $v1 fails: Read-only file system (as it should)"
strata umount "$work/mnt/v1"

say "Both histories: experiment continues from notes' first version"
strata volume log experiment
strata volume list

say "What changed between the two lines of work"
strata volume diff notes experiment

say "Done. Everything lives in $work (store, caches, logs); remove it when you like."
