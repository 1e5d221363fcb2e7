package bootstrap_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	_ "modernc.org/sqlite"
)

// clientCertificate makes a self-signed client certificate and its key.
func clientCertificate(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "reporter"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// TestNoPlaintextSecretAnywhere creates connections with a known password
// and client key, through success and failure paths, then looks for them in
// every place the service writes: responses, logs, every stream message,
// every read-model document and every file under the data folder.
func TestNoPlaintextSecretAnywhere(t *testing.T) {
	dir := t.TempDir()
	h := startService(t, dir, nil)
	random := make([]byte, 12)
	_, _ = rand.Read(random)
	password := "pw-" + hex.EncodeToString(random)
	cert, key := clientCertificate(t)
	keyLines := strings.Split(strings.TrimSpace(key), "\n")
	keyMarker := keyLines[1] // a line of the key's base64 body

	body := validBody("secret-db")
	body["type"] = "MYSQL"
	body["port"] = 3306
	body["password"] = password
	body["ssl"] = map[string]any{"mode": "true", "cert": cert, "key": key}
	res := h.create(body)
	if res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	id := res.json(t)["id"].(string)
	if ssl := res.json(t)["ssl"].(map[string]any); len(ssl) != 1 || ssl["mode"] != "true" {
		t.Errorf("ssl in the response = %v, want only the mode", ssl)
	}
	// Failure paths that carry the secrets: a duplicate, and bad input.
	h.create(body)
	bad := validBody("bad")
	bad["password"] = password
	bad["port"] = "nope"
	bad["ssl"] = map[string]any{"mode": "nonsense", "key": key}
	if res := h.create(bad); res.status != http.StatusBadRequest {
		t.Fatalf("bad input: %d %s", res.status, res.body)
	}
	h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
	h.do(http.MethodGet, "/v1/management/connections", nil, reports)
	eventually(t, "projection", func() bool { return h.svc.Projector.Projected() >= 2 })

	secrets := map[string][]byte{"password": []byte(password), "ssl key": []byte(keyMarker)}
	check := func(where string, data []byte) {
		t.Helper()
		for what, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("the plaintext %s appears in %s", what, where)
			}
		}
	}
	for i, r := range h.responses {
		check("response "+string(rune('0'+i)), r)
	}
	check("the logs", []byte(h.logs.String()))
	msgs := h.streamMessages("")
	if len(msgs) == 0 {
		t.Fatal("no stream message to check")
	}
	for _, m := range msgs {
		check("stream message "+m.Subject, m.Data)
		for k, vs := range m.Header {
			check("header "+k, []byte(strings.Join(vs, ",")))
		}
	}

	docs := 0
	for where, row := range readModelRows(t, h) {
		docs++
		check(where, row)
	}
	if docs == 0 {
		t.Fatal("no read-model document to check")
	}

	h.stop() // flush the stores to disk, then read every file the service wrote
	files := 0
	// A positive control: the scan must see the data it looks through, so the
	// connection's clear fields appear in both stores' files.
	seenIn := map[string]bool{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		check("file "+strings.TrimPrefix(path, dir), data)
		if bytes.Contains(data, []byte(id)) {
			seenIn[strings.Split(strings.TrimPrefix(path, dir+"/"), "/")[0]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 || !seenIn["nats"] || !seenIn["readmodel"] {
		t.Fatalf("the scan of %d files did not see the connection in both stores: %v", files, seenIn)
	}
}

// readModelRows returns every row (or document) of every table (or
// collection) of the service's read model, keyed by where it was found.
func readModelRows(t *testing.T, h *harness) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if h.svc.MongoURI != "" {
		client, err := mongo.Connect(options.Client().ApplyURI(h.svc.MongoURI))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Disconnect(context.Background())
		db := client.Database("connreg")
		names, err := db.ListCollectionNames(t.Context(), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			cur, err := db.Collection(n).Find(t.Context(), bson.D{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; cur.Next(t.Context()); i++ {
				out[fmt.Sprintf("read-model document %d in %s", i, n)] = bytes.Clone(cur.Current)
			}
		}
		return out
	}
	db, err := sql.Open("sqlite", "file:"+h.svc.SQLiteFile+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT name FROM sqlite_schema WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	for _, table := range tables {
		rows, err := db.QueryContext(t.Context(), `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for i := 0; rows.Next(); i++ {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for k := range vals {
				ptrs[k] = &vals[k]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("read-model row %d in %s", i, table)] = fmt.Appendf(nil, "%s", vals)
		}
		rows.Close()
	}
	return out
}
