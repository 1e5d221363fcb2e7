package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/internal/dbprobe"
)

// prober adapts conntest to the commands' Prober port.
type prober struct {
	tester *dbprobe.Tester
	logger *slog.Logger
}

// newProber builds the connection tester from TEST_* variables: the SSRF
// policy (TEST_ALLOWED_NETWORKS, TEST_DENIED_NETWORKS; loopback, link-local
// and metadata addresses refused when ENV=production), TEST_TIMEOUT (10s)
// and TEST_MAX_CONCURRENT (8).
func newProber(cfg Config, logger *slog.Logger) (*prober, error) {
	mode := dbprobe.Development
	if cfg.Production() {
		mode = dbprobe.Production
	}
	policy, err := dbprobe.PolicyFromEnv(mode, cfg.Getenv)
	if err != nil {
		return nil, err
	}
	tc := dbprobe.Config{Policy: policy}
	if v := cfg.Getenv("TEST_TIMEOUT"); v != "" {
		if tc.Timeout, err = time.ParseDuration(v); err != nil || tc.Timeout <= 0 {
			return nil, fmt.Errorf("TEST_TIMEOUT=%q: must be a positive duration such as 10s", v)
		}
	}
	if v := cfg.Getenv("TEST_MAX_CONCURRENT"); v != "" {
		if tc.MaxConcurrent, err = strconv.Atoi(v); err != nil || tc.MaxConcurrent <= 0 {
			return nil, fmt.Errorf("TEST_MAX_CONCURRENT=%q: must be a positive integer", v)
		}
	}
	t, err := dbprobe.New(tc)
	if err != nil {
		return nil, err
	}
	return &prober{tester: t, logger: logger}, nil
}

// rateLimiter builds the per-connection limit of tests (TEST_RATE_LIMIT per
// minute, default 10).
func rateLimiter(cfg Config) (*dbprobe.RateLimiter, error) {
	n := 10
	if v := cfg.Getenv("TEST_RATE_LIMIT"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			return nil, fmt.Errorf("TEST_RATE_LIMIT=%q: must be a positive number of tests per minute", v)
		}
	}
	return dbprobe.NewRateLimiter(n, time.Minute), nil
}

// Probe implements commands.Prober.
func (p *prober) Probe(ctx context.Context, t commands.ProbeTarget) (commands.ProbeResult, error) {
	res, err := p.tester.Test(ctx, dbTarget(t))
	if err != nil {
		return commands.ProbeResult{}, p.refusal(t, err)
	}
	return commands.ProbeResult{Status: string(res.Status), Reason: string(res.Reason), Message: res.Message, Latency: res.Latency}, nil
}

// Discover implements commands.SchemaDiscoverer with the tester's own
// network policy, timeout and concurrency bound.
func (p *prober) Discover(ctx context.Context, t commands.ProbeTarget) (commands.ProbeResult, domain.Schema, error) {
	res, s, err := p.tester.Discover(ctx, dbTarget(t))
	if err != nil {
		return commands.ProbeResult{}, domain.Schema{}, p.refusal(t, err)
	}
	out := domain.Schema{Sampled: s.Sampled, Tables: make([]domain.Table, 0, len(s.Tables))}
	for _, tb := range s.Tables {
		dt := domain.Table{Name: tb.Name, View: tb.View, Columns: make([]domain.Column, 0, len(tb.Columns))}
		for _, c := range tb.Columns {
			dt.Columns = append(dt.Columns, domain.Column{Name: c.Name, Type: c.Type, Nullable: c.Nullable, PrimaryKey: c.PrimaryKey})
		}
		out.Tables = append(out.Tables, dt)
	}
	return commands.ProbeResult{Status: string(res.Status), Reason: string(res.Reason), Message: res.Message, Latency: res.Latency}, out, nil
}

func dbTarget(t commands.ProbeTarget) dbprobe.Target {
	target := dbprobe.Target{
		Engine:   dbprobe.Engine(t.Engine),
		Host:     t.Host,
		Port:     t.Port,
		Database: t.DatabaseName,
		User:     t.UserName,
		Password: dbprobe.Secret(t.Password),
		Schema:   t.Schema,
	}
	if t.SSL != nil {
		target.SSL = &dbprobe.SSL{Mode: t.SSL.Mode, CA: t.SSL.CA, Cert: t.SSL.Cert, Key: dbprobe.Secret(t.SSL.Key)}
	}
	return target
}

// refusal translates the errors of an attempt that dialled nothing.
func (p *prober) refusal(t commands.ProbeTarget, err error) error {
	var invalid *dbprobe.InvalidTargetError
	switch {
	case errors.Is(err, dbprobe.ErrBlocked):
		p.logger.Warn("connection test refused by the network policy", "host", t.Host, "reason", err.Error())
		return fmt.Errorf("%w: %v", commands.ErrTargetRefused, err)
	case errors.Is(err, dbprobe.ErrBusy):
		return commands.ErrProbeBusy
	case errors.As(err, &invalid):
		v := &domain.ValidationError{}
		v.Add(invalid.Field, domain.ViolationBadValue, invalid.Reason)
		return v
	}
	return err
}
