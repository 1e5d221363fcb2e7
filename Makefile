# Everyday commands. The bench writes its JSON to bench-results/ (git-ignored).
.PHONY: run test bench bench-short bench-scale fuzz

run:
	go run ./cmd/api

test:
	go test -race ./...

# Full benchmark: 10s create phases, 100,000 connections, a CPU profile of the
# create path at concurrency 64.
bench:
	go run ./cmd/bench -cpuprofile bench-results/create-c64.pprof

# Under a minute on an idle machine.
bench-short:
	go run ./cmd/bench -short

# Every fuzz target for FUZZTIME each (default 1m): make fuzz FUZZTIME=10m
FUZZTIME ?= 1m
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

# 1,000,000 connections for the list, update and replay phases: an hour or more
# here, several GiB under the temporary DATA_DIR. Not for CI.
bench-scale:
	go run ./cmd/bench -scale
