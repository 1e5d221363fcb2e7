// Package faulttest is the fault suite: tests that run the service as real
// processes (the cmd/api binary, a standalone nats-server, a standalone
// FerretDB, cmd/projector), inject faults under load (kill -9, SIGSTOP,
// restarts) and check that no acknowledged write is lost, no name is owned
// twice, lists are complete and `projector verify` reports equal. It holds
// no code of its own besides storeproc, the store process it kills.
package faulttest
