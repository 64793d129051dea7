package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/internal/tftest"
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
// verification plans run in the background. It reports proposals/s and the
// p50 and p99 latency of the 202 answer.
func BenchmarkProposalIntake(b *testing.B) {
	s := newSite(b)
	body, err := json.Marshal(map[string]any{"bundle": bundle(b, "scale"), "vars": map[string]string{"replicas": "3"},
		"rationale": "benchmark", "plan": benchPlan50(b)})
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
				req, _ := http.NewRequest("POST", s.url+"/api/v1/workspaces/sandbox/proposals", bytes.NewReader(body))
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
