package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/httpapi"
	"github.com/connreg/registry/readmodel"
)

// stack is the service under test, served on a real loopback socket, plus
// the bench's own connections to its NATS and read-model servers.
type stack struct {
	cfg     bootstrap.Config
	svc     *bootstrap.Service
	srv     *http.Server
	base    string // http://127.0.0.1:port
	logPath string

	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	mongo  *mongo.Client
}

// startStack boots the service exactly as cmd/api does (bootstrap.Start),
// with its state in dataDir. NATS_URL, MONGO_URI and VAULT_ADDR (and the
// other service variables) are honoured; MONGO_DATABASE defaults to a
// bench-only database so an external MongoDB keeps its data.
func startStack(ctx context.Context, dataDir, runID string, env map[string]string) (*stack, error) {
	return startStackWith(ctx, dataDir, runID, env, bootstrap.Start)
}

// startFunc starts the service (bootstrap.Start, or StartWith some telemetry).
type startFunc func(context.Context, bootstrap.Config, *slog.Logger) (*bootstrap.Service, error)

// startStackWith is startStack with another start function. env overrides
// the process environment.
func startStackWith(ctx context.Context, dataDir, runID string, env map[string]string, start startFunc) (*stack, error) {
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		switch k {
		case "DATA_DIR":
			return dataDir
		case "MONGO_DATABASE":
			if v := os.Getenv(k); v != "" {
				return v
			}
			return "connreg_bench_" + runID
		}
		return os.Getenv(k)
	}
	cfg, err := bootstrap.ConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	s := &stack{cfg: cfg, logPath: filepath.Join(dataDir, "service.log")}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	// The service logs as in production (JSON, LOG_LEVEL, one access line per
	// request), to a file instead of stderr so the table stays readable.
	logger := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: cfg.LogLevel}))
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if s.svc, err = start(startCtx, cfg, logger); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, err
	}
	s.base = "http://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.svc.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    httpapi.MaxHeaderBytes,
	}
	go func() { _ = s.srv.Serve(httpapi.Listener(ln)) }() // as cmd/api serves

	if s.nc, err = s.svc.ConnectNATS(nats.Name("connreg-bench")); err != nil {
		s.close()
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		s.close()
		return nil, err
	}
	if s.stream, err = s.js.Stream(ctx, events.StreamName); err != nil {
		s.close()
		return nil, err
	}
	if s.svc.MongoURI != "" {
		if s.mongo, err = mongo.Connect(options.Client().ApplyURI(s.svc.MongoURI).SetTimeout(time.Minute)); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *stack) close() {
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.srv.Shutdown(ctx)
		cancel()
	}
	if s.mongo != nil {
		_ = s.mongo.Disconnect(context.Background())
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.svc != nil {
		s.svc.Close()
	}
}

// lastEventSeq is the stream sequence of the newest connection event: what
// a projector has to reach to reflect everything written so far.
func (s *stack) lastEventSeq(ctx context.Context) (uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, events.EventSubjectFilter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// sampleEvent is the newest stored connection event, as stored: the size
// the raw publish limit uses.
func (s *stack) sampleEvent(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	return s.stream.GetLastMsgForSubject(ctx, events.EventSubjectFilter)
}

// waitProjected blocks until the service's projector has reached the newest
// event, and says how long that took.
func (s *stack) waitProjected(ctx context.Context, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	seq, err := s.lastEventSeq(ctx)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := s.svc.Projector.WaitFor(wctx, seq); err != nil {
		return time.Since(start), fmt.Errorf("projector at %d, stream at %d after %s: %w",
			s.svc.Projector.Projected(), seq, limit, err)
	}
	return time.Since(start), nil
}

// newClient is one worker's HTTP client: its own keep-alive connection.
func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     2 * time.Minute,
			DisableCompression:  true,
		},
	}
}

// LogSummary counts what the service logged during the run.
type LogSummary struct {
	Lines    int      `json:"lines"`
	Warnings int      `json:"warnings"`
	Errors   int      `json:"errors"`
	Samples  []string `json:"samples,omitempty"`
}

func summarizeLog(path string) LogSummary {
	var sum LogSummary
	f, err := os.Open(path)
	if err != nil {
		return sum
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		sum.Lines++
		switch {
		case bytes.Contains(line, []byte(`"level":"WARN"`)):
			sum.Warnings++
		case bytes.Contains(line, []byte(`"level":"ERROR"`)):
			sum.Errors++
		default:
			continue
		}
		if len(sum.Samples) < 5 && !strings.Contains(string(line), "DEVELOPMENT SEALER") {
			sum.Samples = append(sum.Samples, truncate(string(line), 400))
		}
	}
	return sum
}

// readModelGet reads a document where the API reads it: the in-memory index
// when this process projects, the store otherwise.
func (s *stack) readModelGet(ctx context.Context, id string) (*readmodel.Document, error) {
	if s.svc.Index != nil {
		return s.svc.Index.Get(ctx, id)
	}
	return s.svc.ActiveReadModel().Get(ctx, id)
}

// readModelFirst lists one document where the API lists: from the index
// when this process keeps one (MongoDB with the projector in process), from
// the store otherwise.
func (s *stack) readModelFirst(ctx context.Context) (readmodel.ListResult, error) {
	if s.svc.Index != nil {
		return s.svc.Index.List(ctx, readModelFirst)
	}
	return s.svc.ActiveReadModel().List(ctx, readModelFirst)
}

// scratchReadModel opens an empty read model of the service's kind beside
// its own (a database of the same MongoDB, or a SQLite file in its own
// directory) and a function that closes and removes it.
func (s *stack) scratchReadModel(ctx context.Context, name string) (bootstrap.ReadModel, func(), error) {
	cfg := s.cfg
	cfg.Timeout = time.Minute
	cfg.MongoDatabase = name
	cfg.DataDir = filepath.Join(s.cfg.DataDir, name)
	repo, err := bootstrap.OpenReadModel(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return repo, func() {
		_ = repo.Close(context.Background())
		if s.mongo != nil {
			_ = s.mongo.Database(name).Drop(context.Background())
		}
		_ = os.RemoveAll(cfg.DataDir)
	}, nil
}
