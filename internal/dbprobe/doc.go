// Package dbprobe reaches a stored connection's database for real: it tests
// a connection (connect, authenticate, run a trivial query, with the SSL
// settings applied) with each engine's own driver, and classifies failures
// into the reasons the API reports. Every dial goes through the network
// policy (policy.go): the host is resolved once, every address is checked,
// and only checked addresses are dialed, so a stored host cannot be turned
// against the registry's own network. Tests per connection are rate-limited
// (ratelimit.go). Credentials arrive unsealed only for one attempt and never
// appear in a message it returns.
//
// Its test servers (PostgreSQL and MariaDB started from Debian's binaries)
// live in the dbtest subpackage.
package dbprobe
