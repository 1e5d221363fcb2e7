// Package monitor is the connection monitor: a process manager that watches
// every live connection and tests it on a schedule, so that a broken
// connection (an expired password, a moved host, a lapsed certificate) shows
// as failing before a report that needs it fails.
//
// It is built on Watermill's router, which is what Watermill is for: one
// message at a time, with side effects, retries, a poison queue and
// throttling. (The read-model projector does not use Watermill: it needs
// ordered batches.) The router runs two handlers:
//
//   - "connection-events" consumes the connection events and keeps the
//     in-memory schedule: a create, or an update that touches the target or
//     the credentials, schedules a test soon; a delete unschedules; an event
//     older than the version already seen for its connection is skipped.
//     Middleware: Recoverer (a bug in one event is logged, not fatal) and a
//     poison queue for messages that cannot be decoded (published to
//     PoisonSubject on the PoisonStream stream with the reason in a header,
//     then acknowledged, so one bad message never blocks the others).
//   - "connection-tests" receives one message per test that falls due from
//     the schedule itself (a message.Subscriber of its own, which hands out at
//     most Concurrency messages before they are acknowledged) and runs the
//     test through commands.TestHandler: the same network policy, rate
//     limit and credential handling as POST /{id}/test. Middleware:
//     Recoverer, Retry with exponential backoff for transient errors only
//     (*domain.UnavailableError: the event store or Vault down), and Throttle
//     (a ceiling of tests per second, so that a schedule loaded at start or
//     a burst of new connections never turns into a flood of connections
//     to customers' databases). The correlation id of the event that
//     scheduled the test travels on the due message and is recorded in the
//     Origin of the connection.tested.v1 event the test appends.
//
// Subscriber choice: a thin subscriber of ours on nats.go's jetstream
// package (jsSubscriber), not watermill-nats/v2's JetStream subscriber.
// watermill-nats v2.1.3 (the only one served) is built on nats.go's legacy
// JetStreamContext, provisions streams and consumers from topic names by
// default, and maps a topic to one subject, while the monitor needs one
// durable consumer on the existing, append-only CONNECTIONS stream filtered to
// connections.events.>, configured the way internal/eventstore configures the
// projector's. Forty lines on the package the rest of the service already
// uses cost less than a second client library and its provisioning rules.
//
// The schedule lives in memory and is coalesced per connection: however many
// events arrive for one connection, it has at most one pending test, and
// the rate limiter of the tester has the last word (a refused test is
// rescheduled after its Retry-After). At start the monitor lists every
// connection id of the event store and spreads their tests over one
// interval. Only one monitor may be active among several processes: the
// composition (internal/bootstrap) runs it under the service's NATS KV lease
// (eventstore.Lease, key "connection-monitor").
package monitor
