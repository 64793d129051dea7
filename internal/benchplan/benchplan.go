// Package benchplan gives benchmarks the plan of 10,000 resource changes
// they measure against, and the peak of the heap while they work.
package benchplan

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/internal/tftest"
)

// Resources is how many resource changes the plan holds.
const Resources = 10000

// config plans Resources terraform_data objects, each with a
// nested input, as one `count`.
const config = `resource "terraform_data" "node" {
  count = %d
  input = {
    name     = "node-${count.index}"
    replicas = count.index %% 7
    ports    = [80, 443]
    labels   = { team = "platform", index = tostring(count.index) }
  }
}
`

// Dir returns the workdir holding a saved plan of Resources changes
// (plan.tfplan) and its JSON (plan.json), and the Terraform that made it. Making it takes a while,
// so it is cached outside the repository, per Terraform version, and reused.
func Dir(b *testing.B) (dir, bin string) {
	b.Helper()
	bin = tftest.Binary(b)
	cache, err := drift.DefaultCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	version := strings.NewReplacer(" ", "-", "/", "-").Replace(tftest.Version(b, bin))
	dir = filepath.Join(cache, "bench", fmt.Sprintf("plan-%d-%s", Resources, version))
	if _, err := os.Stat(filepath.Join(dir, "plan.json")); err == nil {
		return dir, bin
	}
	src := b.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.tf"), fmt.Appendf(nil, config, Resources), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("planning %d resources with %s once; cached in %s", Resources, version, dir)
	w := tftest.NewWorkdir(b, bin, src)
	w.Run("init", "-input=false", "-no-color")
	w.Run("plan", "-input=false", "-no-color", "-out=plan.tfplan")
	if err := os.WriteFile(filepath.Join(w.Dir, "plan.json"), w.Run("show", "-json", "plan.tfplan"), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.CopyFS(dir+".tmp", os.DirFS(w.Dir)); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(dir+".tmp", dir); err != nil {
		b.Fatal(err)
	}
	return dir, bin
}

// PeakHeap runs fn after a collection and returns the largest growth of
// the heap's live objects while it ran, sampled every 200µs.
func PeakHeap(fn func()) uint64 {
	runtime.GC()
	var peak uint64
	stop := sampleHeap(&peak, heapBytes())
	fn()
	stop()
	return peak
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

func heapBytes() uint64 {
	metrics.Read(heapSample)
	return heapSample[0].Value.Uint64()
}

// sampleHeap records in peak the largest heap growth over baseline until
// the returned function is called.
func sampleHeap(peak *uint64, baseline uint64) (stop func()) {
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for !done.Load() {
			metrics.Read(samples)
			if v := samples[0].Value.Uint64(); v > baseline && v-baseline > *peak {
				*peak = v - baseline
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return func() {
		done.Store(true)
		<-finished
	}
}
