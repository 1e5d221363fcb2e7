package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// vaultServer is the repository's own Vault (bin/vault, as the tests run it)
// in dev mode on a loopback port, for the -vault create phases.
type vaultServer struct {
	cmd  *exec.Cmd
	addr string
}

func startVault(ctx context.Context, dir string) (*vaultServer, error) {
	bin, err := filepath.Abs(filepath.Join("bin", "vault"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (build it with scripts/build-vault.sh)", bin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id=root", "-dev-listen-address="+addr)
	cmd.Env = append(os.Environ(), "HOME="+dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &vaultServer{cmd: cmd, addr: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(v.addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return v, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			v.stop()
			return nil, errors.New("vault dev server did not become healthy in 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (v *vaultServer) stop() {
	_ = v.cmd.Process.Kill()
	_ = v.cmd.Wait()
}

// cpu is the Vault process's CPU time so far (user + system, /proc).
func (v *vaultServer) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", v.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // clock ticks (USER_HZ 100)
}

// vaultCreates boots a second service sealing through a Vault dev server and
// runs the create phases against it, with Vault's CPU time counted.
func vaultCreates(ctx context.Context, o benchOptions, runID, dir string, say func(string, ...any)) ([]CreateResult, error) {
	vdir := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vdir, 0o700); err != nil {
		return nil, err
	}
	v, err := startVault(ctx, vdir)
	if err != nil {
		return nil, err
	}
	defer v.stop()
	sdir := filepath.Join(dir, "with-vault")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return nil, err
	}
	st, err := startStack(ctx, sdir, runID+"v", map[string]string{
		"VAULT_ADDR": v.addr, "VAULT_TOKEN": "root", "VAULT_CREATE_KEY": "true",
		"NATS_URL": "", "MONGO_URI": "",
	})
	if err != nil {
		return nil, err
	}
	defer st.close()
	c := &creator{base: st.base, runID: runID + "v"}
	var out []CreateResult
	for _, conc := range o.Concurrencies {
		cpu, vcpu := cpuTime(), v.cpu()
		r := c.closedLoop(ctx, conc, o.Duration)
		spent := cpuTime() - cpu + v.cpu() - vcpu
		r.CPUSeconds = round(spent.Seconds())
		if r.Created > 0 {
			r.CPUPerCreateUs = round(float64(spent.Microseconds()) / float64(r.Created))
		}
		drain, err := st.waitProjected(ctx, 5*time.Minute)
		r.DrainSeconds = round(drain.Seconds())
		out = append(out, r)
		say("  vault c=%d: %.0f creates/s, p50 %.2f ms, p99 %.2f ms, %d errors, %.0f µs CPU per create (Vault's included)",
			conc, r.PerSecond, r.Latency.P50Ms, r.Latency.P99Ms, r.Errors, r.CPUPerCreateUs)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
