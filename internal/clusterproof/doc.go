// Package clusterproof holds the proof that the registry runs as it is
// deployed (deploy/): its test builds nats-server, cmd/api, cmd/projector and
// ./ferretdb, runs three clustered nats-server processes with an R3 stream, a
// FerretDB process, two API processes and two leased projectors on loopback,
// and kills the JetStream meta leader, the stream leader and the active
// projector under load. It has no code of its own besides ./ferretdb.
package clusterproof
