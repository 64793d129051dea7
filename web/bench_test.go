package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/postgres"
	"github.com/seb-broker/seb/broker/sqlite"
	"github.com/seb-broker/seb/internal/pgtest"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/web"
)

// benchPlan50 returns the plan JSON of 50 resources made by the real
// Terraform binary: what an agent sends with its proposal.
func benchPlan50(b *testing.B) json.RawMessage { return benchPlan50TB(b) }

func benchPlan50TB(b testing.TB) json.RawMessage {
	b.Helper()
	dir := b.TempDir()
	config := "resource \"terraform_data\" \"node\" {\n  count = 50\n  input = { name = \"node-${count.index}\", replicas = count.index % 5, tags = { team = \"platform\" } }\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(config), 0o644); err != nil {
		b.Fatal(err)
	}
	w := tftest.NewWorkdir(b, tftest.Binary(b), dir)
	w.Run("init", "-input=false", "-no-color")
	w.Run("plan", "-input=false", "-no-color", "-out=p.tfplan")
	return w.Run("show", "-json", "p.tfplan")
}

// BenchmarkProposalIntake measures the synchronous part of a proposal —
// auth, bundle checks, parsing and summarizing the agent's 50-resource plan,
// storing, auditing — with 16 concurrent clients, while seb's own
// verification plans run in the background: on SQLite, on PostgreSQL with
// one broker, and with two brokers sharing the database (the clients
// alternate). It reports proposals/s and the p50 and p99 latency of the
// 202 answer. The limit on how many of one agent's proposals may wait for
// verification is lifted: this measures intake, not that limit.
func BenchmarkProposalIntake(b *testing.B) {
	plan := benchPlan50(b)
	unlimited := func(o *broker.Options) { o.MaxVerifying = 1 << 20 }
	b.Run("sqlite", func(b *testing.B) {
		benchIntake(b, newSiteFrom(b, siteOptions{broker: unlimited}), plan)
	})
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("postgres-%d", replicas), func(b *testing.B) {
			url := pgtest.Database(b)
			open := func(t testing.TB) *sqlite.Store {
				s, err := postgres.Open(context.Background(), url, postgres.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			benchIntake(b, newSiteFrom(b, siteOptions{broker: unlimited, store: open, replicas: replicas}), plan)
		})
	}
}

func benchIntake(b *testing.B, s *site, plan json.RawMessage) {
	body, err := json.Marshal(map[string]any{"bundle": bundle(b, "scale"), "vars": map[string]string{"replicas": "3"},
		"rationale": "benchmark", "plan": plan})
	if err != nil {
		b.Fatal(err)
	}
	const clients = 16
	latencies := make([]time.Duration, b.N)
	var next sync.Mutex
	i := 0
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				n := i
				i++
				next.Unlock()
				if n >= b.N {
					return
				}
				req, _ := http.NewRequest("POST", s.urls[n%len(s.urls)]+"/api/v1/workspaces/sandbox/proposals", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.tokens["agent-1"])
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				latencies[n] = time.Since(t0)
				if resp.StatusCode != http.StatusAccepted {
					b.Error(fmt.Sprintf("status %d", resp.StatusCode))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
	b.ReportMetric(float64(latencies[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[b.N*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkLargeBodiesAtOnce sends four 95 MiB proposal bodies at once,
// the most a body may be by default, and reports the peak of the
// server's heap while they are read and how much the process keeps from
// the system once they are done: what many large uploads at once cost.
func BenchmarkLargeBodiesAtOnce(b *testing.B) {
	s := newSite(b)
	server, err := web.New(web.Options{Broker: s.svc, Records: s.store})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(server)
	b.Cleanup(hs.Close)
	// 95 MiB of JSON: a base64 "bundle" that is not a gzip'd tar, so
	// the whole body is read and decoded before it is refused.
	raw := bytes.Repeat([]byte{0xA5}, 95<<20/4*3-64)
	body, err := json.Marshal(map[string]any{"bundle": base64.StdEncoding.EncodeToString(raw), "rationale": "large"})
	if err != nil {
		b.Fatal(err)
	}
	raw = nil
	var peak, kept uint64
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		debug.FreeOSMemory()
		stop := make(chan struct{})
		sampled := make(chan uint64)
		go func() {
			var top uint64
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				top = max(top, m.HeapInuse)
				select {
				case <-stop:
					sampled <- top
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", hs.URL+"/api/v1/workspaces/sandbox/proposals", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+s.tokens["agent-1"])
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnprocessableEntity {
					b.Errorf("status %d", resp.StatusCode)
				}
			}()
		}
		wg.Wait()
		close(stop)
		peak = max(peak, <-sampled)
		time.Sleep(200 * time.Millisecond) // the server returns a large body's memory
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		kept = m.HeapSys - m.HeapReleased
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(kept)/(1<<20), "kept-MiB")
}
