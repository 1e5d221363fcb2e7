package devstack_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/connreg/registry/internal/devstack"
)

func TestEmbeddedServersAnswerOnLoopback(t *testing.T) {
	dir := t.TempDir()
	n, err := devstack.StartNATS(dir+"/nats", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.JetStream(); err != nil {
		t.Fatal(err)
	}

	m, err := devstack.StartMongo(dir+"/mongo", "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	coll := c.Database("t").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	var got bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["n"] != int32(1) {
		t.Fatalf("got %v", got)
	}
	t.Log(m.URI(), n.URL())
}

func TestOneStoreDirectoryServesOneServer(t *testing.T) {
	dir := t.TempDir()
	n, err := devstack.StartNATS(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devstack.StartNATS(dir, 0); err == nil {
		t.Fatal("a second nats-server started on the same store directory")
	}
	n.Shutdown()
	again, err := devstack.StartNATS(dir, 0)
	if err != nil {
		t.Fatalf("the directory stayed locked after shutdown: %v", err)
	}
	again.Shutdown()
}
