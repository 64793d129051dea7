package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/drift"
)

// TestImportFileState: the states a broker kept as files under its data
// directory move into the store at start, the latest version of each
// workspace; a workspace whose state the store already holds keeps it, and
// starting again imports nothing twice.
func TestImportFileState(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	files, err := drift.NewFileStateStore(filepath.Join(dataDir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	for _, put := range []struct{ ws, state string }{{"prod", `{"serial":1}`}, {"prod", `{"serial":2}`}, {"staging", `{"serial":7}`}} {
		if _, err := files.Put(ctx, put.ws, []byte(put.state)); err != nil {
			t.Fatal(err)
		}
	}
	store, err := sqlite.Open(filepath.Join(dataDir, "seb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.PutState(ctx, "staging", []byte(`{"serial":9}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := importFileState(ctx, dataDir, store); err != nil {
			t.Fatal(err)
		}
	}
	for ws, want := range map[string]string{"prod": `{"serial":2}`, "staging": `{"serial":9}`} {
		if got, err := store.CurrentState(ctx, ws); err != nil || string(got) != want {
			t.Errorf("%s: %s, %v; want %s", ws, got, err, want)
		}
	}
	v, err := store.PutState(ctx, "prod", []byte(`{"serial":3}`), time.Now())
	if err != nil || v.Serial != 2 {
		t.Errorf("prod was imported %d times: the next version is %+v (%v)", v.Serial-1, v, err)
	}
	if err := importFileState(ctx, t.TempDir(), store); err != nil {
		t.Errorf("a data directory without state: %v", err)
	}
}
