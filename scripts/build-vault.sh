#!/usr/bin/env bash
# build-vault.sh builds bin/vault (HashiCorp Vault, for tests and local
# development only) from scripts/vault, and only when the binary is missing or
# scripts/vault/{go.mod,go.sum,main.go} changed since the last build: the build
# takes 10+ minutes on a small machine, so a CI runner pays it once.
#
# A stamp (sha256 of those files) is kept next to the binary in bin/vault.stamp.
# Concurrent runs (parallel test packages) are serialised with flock.
# Set FORCE=1 to rebuild regardless of the stamp.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/scripts/vault"
bindir="$root/bin"
out="$bindir/vault"
stamp="$out.stamp"
inputs=(go.mod go.sum main.go)

mkdir -p "$bindir"
exec 9>"$bindir/.vault-build.lock"
flock 9

fingerprint() {
	local f
	for f in "${inputs[@]}"; do
		if [[ -f "$src/$f" ]]; then
			printf '%s %s\n' "$f" "$(sha256sum <"$src/$f" | cut -d' ' -f1)"
		else
			printf '%s missing\n' "$f"
		fi
	done | sha256sum | cut -d' ' -f1
}

# CI clones the repository afresh for every run, so bin/ starts empty there:
# keep built binaries in a per-machine cache keyed by the inputs' fingerprint
# and copy from it.
cache="${CONNREG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/connreg}/vault/$(fingerprint)"
if [[ "${FORCE:-0}" != 1 && -x "$cache/vault" && ! ( -x "$out" && -f "$stamp" && "$(cat "$stamp")" == "$(fingerprint)" ) ]]; then
	cp -f "$cache/vault" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out"
	fingerprint >"$stamp"
	echo "build-vault: $out copied from the machine cache $cache"
	exit 0
fi

if [[ "${FORCE:-0}" != 1 && -x "$out" ]]; then
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$(fingerprint)" ]]; then
		[[ -x "$cache/vault" ]] || { mkdir -p "$cache" && cp -f "$out" "$cache/vault"; }
		echo "build-vault: $out is up to date"
		exit 0
	fi
	# A binary without a stamp (built by hand) is adopted when it is newer
	# than every input, instead of paying for a rebuild.
	if [[ ! -f "$stamp" ]]; then
		newer=1
		for f in "${inputs[@]}"; do
			if [[ -f "$src/$f" && "$src/$f" -nt "$out" ]]; then newer=0; fi
		done
		if [[ $newer == 1 ]]; then
			fingerprint >"$stamp"
			mkdir -p "$cache" && cp -f "$out" "$cache/vault"
			echo "build-vault: adopted existing $out"
			exit 0
		fi
	fi
fi

echo "build-vault: building $out from $src (this can take more than 10 minutes)" >&2
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$src" && go build -mod=mod -tags minimal -o "$tmp" .)
mv -f "$tmp" "$out"
# Fingerprint after the build: -mod=mod may have updated go.sum.
fingerprint >"$stamp"
cache="${CONNREG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/connreg}/vault/$(fingerprint)"
mkdir -p "$cache" && cp -f "$out" "$cache/vault"
echo "build-vault: built $out"
