// Package events is the public wire contract of the connection registry: the
// subjects, the envelope and the versioned payloads that the service appends
// to its JetStream stream. Downstream services import this package (it depends
// on the standard library only) to decode what they receive.
//
// # Subjects
//
//	connections.events.<connectionId>      every event of one connection, in order
//	connections.names.<org>.<configName>   name claims (lower-cased config name)
//
// Both live in one stream (StreamName). A consumer that only wants connection
// events filters on EventSubjectFilter.
//
// # Versioning
//
// An event type name ends in its version (connection.created.v1) and never
// changes meaning once published. Adding an optional field keeps the version;
// removing, renaming or re-typing a field publishes a new version, and Decode
// upcasts older versions to the newest payload type.
package events
