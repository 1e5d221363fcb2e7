package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/sealer/vault"
)

// ErrNothingToRotate: without VAULT_ADDR the service seals with the
// development sealer, whose single key never rotates, so there is nothing to
// re-seal. `cmd/api reseal` reports it and exits 0.
var ErrNothingToRotate = errors.New("VAULT_ADDR is empty: the development sealer has one key version, nothing to rotate")

// ErrAPIRunning: the embedded stack was asked for while something answers on
// HTTP_ADDR, most likely the API with its own embedded nats-server on the
// same DATA_DIR. Two nats-servers on one store directory corrupt it, so the
// reseal refuses to start one.
var ErrAPIRunning = errors.New("an API seems to be running")

// ResealActor is the actor recorded on the events a reseal appends.
const ResealActor = "connreg-reseal"

// ResealOptions tune a Reseal run; the zero value is the default.
type ResealOptions struct {
	// Workers is how many connections are resealed at once (default 4).
	Workers int
	// Progress is called once per connection examined, never concurrently.
	Progress func(commands.ResealProgress)
	// DryRun reports which connections are stale and changes nothing.
	DryRun bool
}

// Reseal re-seals every stored credential under the newest version of the
// Vault transit key (transit rewrap: the plaintext never leaves Vault),
// appending one connection.credentials-resealed.v1 event per connection it
// changes: the process behind `cmd/api reseal`. It reads the same
// configuration as the service. With NATS_URL it works against that server
// and may run while the API serves (every write carries the connection's
// expected version). Without NATS_URL it starts the embedded nats-server on
// DATA_DIR/nats, which is only safe with the API stopped: it refuses with
// ErrAPIRunning when something answers on HTTP_ADDR, but cannot see an API
// listening elsewhere.
//
// The report counts what was done even when an error is returned; a run that
// stopped early is finished by running it again.
func Reseal(ctx context.Context, cfg Config, logger *slog.Logger, opts ResealOptions) (commands.ResealReport, error) {
	if cfg.VaultAddr == "" {
		return commands.ResealReport{}, ErrNothingToRotate
	}
	vcfg, err := vault.ConfigFromEnv(cfg.Getenv)
	if err != nil {
		return commands.ResealReport{}, err
	}

	// Vault first: a wrong address, token or key is reported before anything
	// else starts.
	sealer, err := vault.New(ctx, vcfg, logger.With("component", "vault"))
	if err != nil {
		return commands.ResealReport{}, err
	}
	defer sealer.Close()

	url := cfg.NATSURL
	if url == "" {
		if addr := apiAnswersOn(cfg.HTTPAddr); addr != "" {
			return commands.ResealReport{}, fmt.Errorf("%w on %s (HTTP_ADDR) and NATS_URL is empty: "+
				"stop the API before resealing its embedded stack under DATA_DIR=%s, or set NATS_URL to the server it uses",
				ErrAPIRunning, addr, cfg.DataDir)
		}
		dir := filepath.Join(cfg.DataDir, "nats")
		n, err := devstack.StartNATS(dir, 0)
		if err != nil {
			return commands.ResealReport{}, err
		}
		defer n.Shutdown()
		url = n.URL()
		logger.Info("embedded nats-server started for the reseal; the API must stay stopped until it ends", "dir", dir)
	}
	nc, err := connectNATS(cfg, url, "connreg-reseal", logger)
	if err != nil {
		return commands.ResealReport{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return commands.ResealReport{}, err
	}
	// The stream is looked up, never created or reconfigured: a maintenance
	// run leaves the system of record's configuration to the service.
	stream, err := js.Stream(ctx, events.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		logger.Info("no event stream yet: nothing to reseal", "stream", events.StreamName)
		return commands.ResealReport{}, nil
	}
	if err != nil {
		return commands.ResealReport{}, domain.Unavailable(domain.DependencyEventStore, fmt.Errorf("stream %s: %w", events.StreamName, err))
	}
	store, err := eventstore.NewStore(nc, stream, cfg.Timeout)
	if err != nil {
		return commands.ResealReport{}, err
	}

	h, err := commands.NewResealHandler(commands.ResealDeps{
		IDs:           store,
		History:       store,
		Store:         store,
		Sealer:        sealer,
		SealedVersion: sealedVersion(vcfg.Key),
		NewID:         newID,
		Now:           now,
		Workers:       opts.Workers,
	})
	if err != nil {
		return commands.ResealReport{}, err
	}
	run := newID()
	return h.Handle(ctx, commands.ResealCredentials{
		Origin:   domain.Origin{Actor: ResealActor, RequestID: run, CorrelationID: run},
		Progress: opts.Progress,
		DryRun:   opts.DryRun,
	})
}

// sealedVersion reads the key version of a secret sealed by the Vault sealer
// with the given key; a secret of another scheme or key (a development
// ciphertext, a renamed key) is an error, never "current".
func sealedVersion(key string) func(domain.SealedSecret) (int, error) {
	return func(s domain.SealedSecret) (int, error) {
		if s.Scheme != vault.Scheme || s.KeyName != key {
			return 0, fmt.Errorf("secret %s is not sealed with %s/%s: %w", s, vault.Scheme, key, vault.ErrScheme)
		}
		return vault.CiphertextVersion(s)
	}
}

// apiAnswersOn returns the address dialled when something accepts TCP
// connections on the HTTP address, "" otherwise.
func apiAnswersOn(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return ""
	}
	_ = c.Close()
	return addr
}
