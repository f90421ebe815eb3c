#!/usr/bin/env bash
# Build the Go tools the test harness runs (kube-apiserver, etcd, csi-sanity, helm,
# versitygw) from the pinned wrapper modules in tools/<tool>/, into a cache directory
# outside the repository that is reused across runs.
#
# usage: tools/build.sh [TOOL...]        (default: every tools/*/binaries)
#
# Each tool is built into $STRATA_TOOLS_DIR/<tool>/<key>/, where <key> hashes the
# wrapper's go.mod, go.sum and binaries list, and a `.stamp` file marks a complete
# build; an unchanged wrapper is never rebuilt. $STRATA_TOOLS_DIR/bin/ holds symlinks
# to the current binaries. A failed build names the tool, the module and the reason.
set -euo pipefail

# STRATA_TOOLS_SRC points at another set of wrapper modules (the harness tests use it).
here=${STRATA_TOOLS_SRC:-$(cd "$(dirname "$0")" && pwd)}
cache=${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/tools}
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
# go.sum in each wrapper is the pin: every module is verified against it, so the
# checksum database is not consulted.
export GOSUMDB=off

if ! command -v go >/dev/null 2>&1; then
  echo "strata tools: 'go' is not on PATH; install Go 1.26+ to build the test tools" >&2
  exit 1
fi

tools=("$@")
if [ ${#tools[@]} -eq 0 ]; then
  for spec in "$here"/*/binaries; do tools+=("$(basename "$(dirname "$spec")")"); done
fi

mkdir -p "$cache/bin"
status=0
for tool in "${tools[@]}"; do
  dir="$here/$tool"
  if [ ! -f "$dir/binaries" ]; then
    echo "strata tools: unknown tool '$tool' (no $dir/binaries)" >&2
    status=1
    continue
  fi
  key=$(cat "$dir/go.mod" "$dir/go.sum" "$dir/binaries" | sha256sum | cut -c1-16)
  out="$cache/$tool/$key"
  module=$(awk '/^require/ && NF>=3 {print $2" "$3; exit}' "$dir/go.mod")
  if [ -f "$out/.stamp" ]; then
    echo "strata tools: $tool ($module) is cached in $out"
  else
    echo "strata tools: building $tool ($module) into $out ..."
    mkdir -p "$out/bin"
    log="$cache/$tool/build-$key.log"
    : >"$log"
    ok=1
    start=$(date +%s)
    # binaries: one line per command: NAME PACKAGE [LDFLAGS...]
    while read -r name pkg ldflags; do
      case "$name" in ''|'#'*) continue ;; esac
      echo "  go build $pkg -> $name" | tee -a "$log"
      if ! (cd "$dir" && go build -pgo=off -trimpath -ldflags "-s -w $ldflags" \
              -o "$out/bin/$name" "$pkg") >>"$log" 2>&1; then
        ok=0
        echo "strata tools: FAILED to build $name for tool '$tool' ($module)." >&2
        echo "  reason (last lines of $log):" >&2
        tail -n 15 "$log" | sed 's/^/    /' >&2
        break
      fi
    done <"$dir/binaries"
    if [ $ok -eq 0 ]; then status=1; continue; fi
    echo "$module built $(date -u +%FT%TZ) in $(( $(date +%s) - start ))s" >"$out/.stamp"
    echo "strata tools: built $tool in $(( $(date +%s) - start ))s"
  fi
  for bin in "$out"/bin/*; do ln -sfn "$bin" "$cache/bin/$(basename "$bin")"; done
done
exit $status
