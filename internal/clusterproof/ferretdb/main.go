// Command ferretdb runs the embedded FerretDB (SQLite backend, the devstack's)
// as a process of its own on a loopback address, so that the cluster test's
// read model is an external Mongo-wire server like a production MongoDB, and
// not instrumented by the race detector of the test binary.
//
//	ferretdb -dir DIR -addr 127.0.0.1:PORT
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/connreg/registry/internal/devstack"
)

func main() {
	dir := flag.String("dir", "", "SQLite directory")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, err := devstack.StartMongo(*dir, *addr, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(m.URI())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	m.Shutdown()
}
