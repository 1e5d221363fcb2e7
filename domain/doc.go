// Package domain is the connection aggregate and the rules it enforces: a
// Connection changes only by applying events (events package), so the state
// rebuilt from the stream (Rebuild) is the state the service acted on. Value
// objects (config name, product name, engine, SSL settings, metadata) are
// parsed by constructors that refuse invalid input and report every refused
// field at once (*ValidationError). Secrets exist here only sealed.
//
// The package imports the standard library and events only: no adapter, no
// JSON, BSON or HTTP; translation belongs to the adapters.
package domain
