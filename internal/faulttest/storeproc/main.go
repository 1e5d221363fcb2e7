// Command storeproc runs FerretDB (SQLite) on a loopback address as a process
// of its own, so that the fault suite can kill and restart the read-model
// store under a running API: storeproc <dir> <host:port>.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/connreg/registry/internal/devstack"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: storeproc <dir> <host:port>")
		os.Exit(2)
	}
	m, err := devstack.StartMongo(os.Args[1], os.Args[2], slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	m.Shutdown()
}
