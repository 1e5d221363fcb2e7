#!/usr/bin/env bash
# Runs every Go native fuzz target for FUZZTIME each (default 10s), one target
# per `go test` invocation (Go fuzzes one target at a time). .ci/run calls it
# with the short default after the tests; `make fuzz FUZZTIME=10m` runs it
# longer on demand. A failing input is written under the package's
# testdata/fuzz/<Target>/ and makes the run fail: commit it with the fix, and
# it becomes a regression test of the plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"

targets=(
	./domain:FuzzParseSpec
	./events:FuzzDecode
	./internal/httpapi:FuzzCreateBody
	./internal/httpapi:FuzzPatchBody
	./internal/httpapi:FuzzListQuery
	./internal/httpapi:FuzzCursor
)
for t in "${targets[@]}"; do
	pkg="${t%%:*}" fn="${t##*:}"
	echo "fuzz: $fn in $pkg for $FUZZTIME"
	go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$pkg"
done
