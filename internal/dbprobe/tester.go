package dbprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"
)

// DefaultTimeout bounds one whole attempt (resolve, connect, TLS, authenticate, query) when
// Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// DefaultMaxConcurrent bounds the tests running at once when Config.MaxConcurrent is zero: each test holds
// a socket and a driver's buffers, and a burst of requests must not exhaust the API's file descriptors.
const DefaultMaxConcurrent = 8

// ErrBusy is returned when no test slot became free before the caller's context or the timeout ended.
// Nothing was dialled; the caller should answer "try again later".
var ErrBusy = errors.New("conntest: too many connection tests in progress")

// InvalidTargetError is returned for a Target that cannot be tested at all (unknown engine or SSL mode,
// a host that is not a host name). It is a request problem, not a connection failure.
type InvalidTargetError struct {
	Field  string
	Reason string
}

// Error names the field; it never contains the password.
func (e *InvalidTargetError) Error() string {
	return "conntest: invalid " + e.Field + ": " + e.Reason
}

// Config tunes a Tester. The Policy is required so that the SSRF guard is a decision of the composition
// root, never an accident of a zero value.
type Config struct {
	// Timeout bounds each attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// MaxConcurrent bounds the attempts in flight across all callers; DefaultMaxConcurrent when zero.
	MaxConcurrent int
	// Policy decides which addresses may be dialled. Required.
	Policy *Policy
	// Resolver resolves host names; net.DefaultResolver when nil.
	Resolver Resolver
}

// Tester connects to databases for real to tell whether a stored connection works. It is safe for
// concurrent use and holds no connection between calls.
type Tester struct {
	timeout  time.Duration
	sem      chan struct{}
	policy   *Policy
	resolver Resolver
}

// New validates cfg and returns a Tester.
func New(cfg Config) (*Tester, error) {
	if cfg.Policy == nil {
		return nil, errors.New("conntest: Config.Policy is required")
	}
	if cfg.Timeout < 0 || cfg.MaxConcurrent < 0 {
		return nil, errors.New("conntest: Config.Timeout and Config.MaxConcurrent must not be negative")
	}
	t := &Tester{timeout: cfg.Timeout, policy: cfg.Policy, resolver: cfg.Resolver}
	if t.timeout == 0 {
		t.timeout = DefaultTimeout
	}
	n := cfg.MaxConcurrent
	if n == 0 {
		n = DefaultMaxConcurrent
	}
	t.sem = make(chan struct{}, n)
	if t.resolver == nil {
		t.resolver = net.DefaultResolver
	}
	return t, nil
}

var defaultPorts = map[Engine]int{PostgreSQL: 5432, MySQL: 3306, SQLServer: 1433, Oracle: 1521, MongoDB: 27017}

// hostRE accepts DNS names and IP literals only: no path (a PostgreSQL unix socket), no comma (a pgx
// host list), no backslash (a SQL Server instance resolved through the UDP browser), no spaces.
var hostRE = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}))$`)

func validate(t *Target) error {
	if _, ok := defaultPorts[t.Engine]; !ok {
		return &InvalidTargetError{Field: "engine", Reason: fmt.Sprintf("%q is not a supported engine", string(t.Engine))}
	}
	if !hostRE.MatchString(t.Host) {
		return &InvalidTargetError{Field: "host", Reason: fmt.Sprintf("%q is not a host name or IP address", t.Host)}
	}
	if t.Port == 0 {
		t.Port = defaultPorts[t.Engine]
	}
	if t.Port < 1 || t.Port > 65535 {
		return &InvalidTargetError{Field: "port", Reason: strconv.Itoa(t.Port) + " is outside 1-65535"}
	}
	if t.User == "" && t.Engine != MongoDB {
		return &InvalidTargetError{Field: "user", Reason: "a user name is required"}
	}
	if t.Engine == Oracle && t.Database == "" {
		return &InvalidTargetError{Field: "database", Reason: "Oracle needs the service name as the database"}
	}
	return nil
}

// Test connects to target with the engine's own driver, runs a trivial query and reports the outcome.
// A connection problem is a Result with Status failure, never an error. The error is non-nil only when
// no attempt was made: *InvalidTargetError, a *BlockedError (errors.Is ErrBlocked) when the host
// resolves to an address the Policy refuses, or ErrBusy. The password and key never appear in either.
func (t *Tester) Test(ctx context.Context, target Target) (Result, error) {
	if err := validate(&target); err != nil { // sets the default port the message names
		return Result{}, err
	}
	res, err := t.attempt(ctx, target, t.run)
	if err == nil && res.Status == StatusSuccess {
		res.Message = fmt.Sprintf("connected to %s and ran a query in %s", net.JoinHostPort(target.Host, strconv.Itoa(target.Port)), res.Latency.Round(time.Millisecond))
	}
	return res, err
}

// attempt is one guarded use of a database, shared by Test and Discover: the target is validated, a slot
// of the concurrency bound taken, the host resolved under the Policy and every dial pinned to the
// addresses it allowed, the whole bounded by the timeout; a failure of work is classified.
func (t *Tester) attempt(ctx context.Context, target Target, work func(context.Context, Target, *guardedDialer) error) (Result, error) {
	if err := validate(&target); err != nil {
		return Result{}, err
	}
	if err := checkMode(target); err != nil {
		return Result{}, err
	}

	wait, cancelWait := context.WithTimeout(ctx, t.timeout)
	select {
	case t.sem <- struct{}{}:
		cancelWait()
	case <-wait.Done():
		cancelWait()
		return Result{}, ErrBusy
	}
	defer func() { <-t.sem }()

	actx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	start := time.Now()

	pinned, err := t.policy.Resolve(actx, t.resolver, target.Host)
	if errors.Is(err, ErrBlocked) {
		return Result{}, err
	}
	if err == nil {
		d := &guardedDialer{policy: t.policy, resolver: t.resolver, host: target.Host, pinned: pinned}
		stop := context.AfterFunc(actx, d.closeAll)
		err = recovered(func() error { return work(actx, target, d) })
		stop()
		if errors.Is(err, ErrBlocked) { // a host the driver was redirected to
			return Result{}, err
		}
	}
	res := Result{Status: StatusSuccess, Latency: time.Since(start)}
	if err != nil {
		res.Status = StatusFailure
		res.Reason = classify(target.Engine, err, actx)
		res.Message = describe(target, res.Reason, err, t.timeout)
	}
	return res, nil
}

func (t *Tester) run(ctx context.Context, target Target, d *guardedDialer) (err error) {
	defer func() {
		if r := recover(); r != nil { // a driver bug must not take the API down
			err = fmt.Errorf("driver panic: %v", r)
		}
	}()
	switch target.Engine {
	case PostgreSQL:
		return testPostgres(ctx, target, d)
	case MySQL:
		return testMySQL(ctx, target, d, t.timeout)
	case MongoDB:
		return testMongo(ctx, target, d, t.timeout)
	case SQLServer:
		return testSQLServer(ctx, target, d, t.timeout)
	case Oracle:
		return testOracle(ctx, target, d, t.timeout)
	}
	return fmt.Errorf("engine %s not implemented", target.Engine)
}

// recovered runs f and turns a panic into an error: a driver bug must not take the API down.
func recovered(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("driver panic: %v", r)
		}
	}()
	return f()
}

// checkMode rejects an SSL mode the engine does not define before anything is dialled.
func checkMode(t Target) error {
	var valid []string
	switch t.Engine {
	case PostgreSQL:
		valid = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	case MySQL:
		valid = []string{"false", "true", "skip-verify", "preferred"}
	case MongoDB:
		valid = []string{"disable", "false", "true", "enable", "insecure"}
	case Oracle:
		valid = []string{"disable", "false", "true", "enable", "verify", "skip-verify"}
	case SQLServer:
		valid = []string{"disable", "false", "true", "strict"}
	}
	m := sslMode(t.SSL)
	if m == "" {
		return nil
	}
	for _, v := range valid {
		if m == v {
			return nil
		}
	}
	return invalidMode(t.Engine, m, valid...)
}

// closeTimeout bounds the polite goodbye to the server after a test.
const closeTimeout = 2 * time.Second

func closeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), closeTimeout)
}
