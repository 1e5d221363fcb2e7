package eventstore

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
)

// freePort returns a loopback TCP port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts three in-process nats-servers clustered with routes on
// loopback, with JetStream, and returns a client URL list once JetStream
// answers through it.
func startCluster(t *testing.T) string {
	t.Helper()
	routes := make([]*url.URL, 3)
	ports := make([]int, 3)
	for i := range routes {
		ports[i] = freePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	var clientURLs []string
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		clientURLs = append(clientURLs, srv.ClientURL())
	}
	list := strings.Join(clientURLs, ",")
	nc, err := nats.Connect(list)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := js.AccountInfo(t.Context()); err == nil {
			return list
		} else if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEnsureStreamKeepsReplicas: a process configured for one replica must
// not shrink a stream an operator moved to three (it did before
// STREAM_REPLICAS), STREAM_UPDATE moves it, and the projector's durable
// consumer follows the stream's replica count.
func TestEnsureStreamKeepsReplicas(t *testing.T) {
	nc, err := nats.Connect(startCluster(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	replicas := func(s jetstream.Stream) int { return s.CachedInfo().Config.Replicas }

	s, err := EnsureStream(ctx, js, StreamOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if replicas(s) != 3 {
		t.Fatalf("created with %d replicas, want 3", replicas(s))
	}
	cons, err := projectorConsumer(ctx, js, ProjectorConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if r := cons.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("projector consumer has %d replicas on an R3 stream, want 3", r)
	}

	s, err = EnsureStream(ctx, js, StreamOptions{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if replicas(s) != 3 {
		t.Fatalf("a process configured for 1 replica changed the stream to %d replicas", replicas(s))
	}
	info, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if replicas(info) != 3 {
		t.Fatalf("the server reports %d replicas, want 3 kept", replicas(info))
	}

	s, err = EnsureStream(ctx, js, StreamOptions{Replicas: 1, Update: true})
	if err != nil {
		t.Fatal(err)
	}
	if replicas(s) != 1 {
		t.Fatalf("with Update the stream has %d replicas, want 1", replicas(s))
	}
	cons, err = projectorConsumer(ctx, js, ProjectorConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if r := cons.CachedInfo().Config.Replicas; r != 1 {
		t.Fatalf("projector consumer has %d replicas on an R1 stream, want 1", r)
	}
}

// TestProjectorConsumerUpgradesAnOldConsumer: a consumer an earlier version
// created without a replica count is taken over, not refused.
func TestProjectorConsumerUpgradesAnOldConsumer(t *testing.T) {
	f := newFixture(t)
	old := projectorConsumerConfig(ProjectorConsumer)
	if _, err := f.js.CreateOrUpdateConsumer(t.Context(), events.StreamName, old); err != nil {
		t.Fatal(err)
	}
	if _, err := projectorConsumer(t.Context(), f.js, ProjectorConsumer); err != nil {
		t.Fatal(err)
	}
}
