package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/eventstore"
)

// MonitorBench is what runMonitorBench measured.
type MonitorBench struct {
	Connections       int     `json:"connections"`
	WindowSeconds     float64 `json:"windowSeconds"`
	Tests             int64   `json:"tests"`
	TestsPerSecond    float64 `json:"testsPerSecond"`
	IdleCPUPerSecond  float64 `json:"idleCpuSecondsPerSecond"`
	CPUPerTestMs      float64 `json:"cpuPerTestMs"`
	CPUPer15MinAt10k  float64 `json:"cpuSecondsPer15MinAt10k"`
	CoresAt10k        float64 `json:"averageCoresAt10k"`
	CreatesPerSecOff  float64 `json:"createsPerSecondMonitorOff"`
	CreatesPerSecOn   float64 `json:"createsPerSecondMonitorOn"`
	CreateConcurrency int     `json:"createConcurrency"`
}

// runMonitorBench measures the connection monitor's cost, on a service of
// its own whose connections all point at a closed loopback port (the
// monitor must never dial made-up hosts). It creates the connections with
// the monitor off (creates/s "off"), measures the process's idle CPU, then
// runs the monitor (bootstrap.RunMonitor, as cmd/monitor does) at an
// interval compressed to the measuring window with a rate limit out of the
// way, and counts its connection.tested.v1 events: the CPU above idle
// divided by the tests is the CPU of one test, everything included (the
// test, its events, NATS, the projector writing the result to the read
// model). At a 15-minute interval each connection is tested once per 15
// minutes, so 10,000 connections cost 10,000 × that per 15 minutes. Last, it
// measures creates/s again with the monitor running (at the compressed
// interval: a load far above production's).
func runMonitorBench(ctx context.Context, short bool, cpuProfile string, out, progress io.Writer) (MonitorBench, error) {
	n, window, createFor, conc := 10_000, 20*time.Second, 10*time.Second, 16
	if short {
		n, window, createFor = 300, 2*time.Second, 2*time.Second
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	dir, err := os.MkdirTemp("", "connreg-bench-monitor-")
	if err != nil {
		return MonitorBench{}, err
	}
	defer os.RemoveAll(dir)
	closed, err := closedPort()
	if err != nil {
		return MonitorBench{}, err
	}
	// A NATS server with a listener, shared by the service and the
	// monitor's own process-like runner (the service's embedded one is
	// in-process only).
	ns, err := devstack.StartNATS(filepath.Join(dir, "nats"), 0)
	if err != nil {
		return MonitorBench{}, err
	}
	defer ns.Shutdown()
	env := map[string]string{"DATA_DIR": dir, "TEST_RATE_LIMIT": "1000000", "TEST_TIMEOUT": "2s", "LOG_LEVEL": "error",
		"TEST_MAX_CONCURRENT": "64", "NATS_URL": ns.URL()}
	getenv := func(k string) string { return env[k] }
	cfg, err := bootstrap.ConfigFromEnv(getenv)
	if err != nil {
		return MonitorBench{}, err
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	svc, err := bootstrap.Start(ctx, cfg, logger)
	if err != nil {
		return MonitorBench{}, err
	}
	defer svc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return MonitorBench{}, err
	}
	srv := &http.Server{Handler: svc.Handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	res := MonitorBench{Connections: n, WindowSeconds: window.Seconds(), CreateConcurrency: conc}
	say("monitor: creating %d connections to 127.0.0.1:%d (monitor off)", n, closed)
	var next atomic.Int64
	if res.CreatesPerSecOff, err = createLoopback(ctx, base, closed, conc, &next, int64(n), 0); err != nil {
		return res, err
	}
	idleStart := cpuTime()
	time.Sleep(window)
	res.IdleCPUPerSecond = (cpuTime() - idleStart).Seconds() / window.Seconds()

	nc, err := svc.ConnectNATS(nats.Name("connreg-bench-monitor"))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	var tests atomic.Int64
	sub, err := nc.Subscribe(events.EventSubjectFilter, func(m *nats.Msg) {
		if m.Header.Get(eventstore.HeaderEventType) == events.TypeConnectionTestedV1 {
			tests.Add(1)
		}
	})
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()

	mcfg := cfg
	mcfg.MonitorInterval, mcfg.MonitorConcurrency = window, 4
	mctx, stopMonitor := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := bootstrap.RunMonitor(mctx, mcfg, logger); err != nil {
			say("monitor: %v", err)
		}
	}()
	defer func() { stopMonitor(); wg.Wait() }()
	// The first second is the monitor's start (lease, subscription, loading
	// the ids); the window starts after it.
	time.Sleep(time.Second)
	say("monitor: measuring %s with the monitor testing every connection every %s", window, window)
	var stopProfile func() error
	if cpuProfile != "" {
		if stopProfile, err = startCPUProfile(cpuProfile); err != nil {
			return res, err
		}
	}
	start, cpu0, t0 := time.Now(), cpuTime(), tests.Load()
	time.Sleep(window)
	elapsed, cpu, done := time.Since(start), cpuTime()-cpu0, tests.Load()-t0
	if stopProfile != nil {
		if err := stopProfile(); err != nil {
			return res, err
		}
	}
	res.Tests = done
	res.TestsPerSecond = float64(done) / elapsed.Seconds()
	if done > 0 {
		above := cpu.Seconds() - res.IdleCPUPerSecond*elapsed.Seconds()
		res.CPUPerTestMs = round(1000 * above / float64(done))
		res.CPUPer15MinAt10k = round(10_000 * above / float64(done))
		res.CoresAt10k = round(res.CPUPer15MinAt10k / (15 * 60))
	}
	say("monitor: creates at concurrency %d for %s with the monitor running", conc, createFor)
	if cpuProfile != "" {
		if stopProfile, err = startCPUProfile(cpuProfile + ".creates"); err != nil {
			return res, err
		}
	}
	res.CreatesPerSecOn, err = createLoopback(ctx, base, closed, conc, &next, 0, createFor)
	if stopProfile != nil {
		_ = stopProfile()
	}
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "\nconnection monitor (%d connections to a closed loopback port)\n", n)
	fmt.Fprintf(out, "  tests measured       %d in %.1fs (%.0f/s; Throttle caps at 20/s)\n", done, elapsed.Seconds(), res.TestsPerSecond)
	fmt.Fprintf(out, "  CPU per test         %.2f ms (process CPU above idle %.3f cores, per test: test, events, NATS, projection)\n", res.CPUPerTestMs, res.IdleCPUPerSecond)
	fmt.Fprintf(out, "  10,000 every 15 min  %.1f CPU-s per 15 min = %.4f cores on average\n", res.CPUPer15MinAt10k, res.CoresAt10k)
	fmt.Fprintf(out, "  creates/s (c=%d)     %.0f monitor off, %.0f with the monitor testing every %s\n", conc, res.CreatesPerSecOff, res.CreatesPerSecOn, window)
	return res, nil
}

// createLoopback creates connections to 127.0.0.1:port with conc workers,
// count of them (or for d when count is 0), and returns creates/s.
func createLoopback(ctx context.Context, base string, port, conc int, next *atomic.Int64, count int64, d time.Duration) (float64, error) {
	var ok atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := newClient()
			defer client.CloseIdleConnections()
			for ctx.Err() == nil && firstErr.Load() == nil {
				if d > 0 && time.Since(start) > d {
					return
				}
				i := next.Add(1)
				if count > 0 && i > count {
					return
				}
				body := []byte(`{"configName":"monitor-bench-` + strconv.FormatInt(i, 10) + `","type":"POSTGRESQL","host":"127.0.0.1","port":` +
					strconv.Itoa(port) + `,"databaseName":"db","userName":"u","password":"p-` + strconv.FormatInt(i, 10) + `"}`)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/management/connections", bytes.NewReader(body))
				if err != nil {
					firstErr.Store(err)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Product-Name", "bench")
				resp, err := client.Do(req)
				if err != nil {
					firstErr.Store(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					firstErr.Store(fmt.Errorf("create: %d %s", resp.StatusCode, b))
					return
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(ok.Load()) / time.Since(start).Seconds(), nil
}

// closedPort returns a loopback port nothing listens on (a moment ago).
func closedPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// cpuTime is the CPU (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
