// Package commands holds the write side's use cases, one file each (create,
// update and delete, test, reseal): a handler loads the aggregate from the
// event store, calls one domain method and appends the events it recorded.
// The ports it needs (EventStore, History, Sealer, Unsealer, Prober, ...) are
// declared here, small, and implemented by the adapters under internal/.
//
// Optimistic concurrency stays in the event store (Append with an expected
// version and name claims); the one rule for a lost race is afterConflict.
package commands
