package planparse_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/planparse"
)

const benchResources = 10000

// benchConfig plans benchResources terraform_data objects, each with a
// nested input, as one `count`.
const benchConfig = `resource "terraform_data" "node" {
  count = %d
  input = {
    name     = "node-${count.index}"
    replicas = count.index %% 7
    ports    = [80, 443]
    labels   = { team = "platform", index = tostring(count.index) }
  }
}
`

// benchPlan returns the workdir holding a saved plan of benchResources
// changes (plan.tfplan) and its JSON (plan.json). Making it takes a while,
// so it is cached outside the repository, per Terraform version, and reused.
func benchPlan(b *testing.B) (dir, bin string) {
	b.Helper()
	bin = tftest.Binary(b)
	cache, err := drift.DefaultCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	version := strings.NewReplacer(" ", "-", "/", "-").Replace(tftest.Version(b, bin))
	dir = filepath.Join(cache, "bench", fmt.Sprintf("plan-%d-%s", benchResources, version))
	if _, err := os.Stat(filepath.Join(dir, "plan.json")); err == nil {
		return dir, bin
	}
	src := b.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.tf"), fmt.Appendf(nil, benchConfig, benchResources), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("planning %d resources with %s once; cached in %s", benchResources, version, dir)
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

// BenchmarkSummarize10k parses, summarizes and digests a plan of 10,000
// resource changes straight from its file, and reports the peak heap the
// parse adds as a multiple of the JSON size (target: under 3).
func BenchmarkSummarize10k(b *testing.B) {
	dir, _ := benchPlan(b)
	path := filepath.Join(dir, "plan.json")
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Size())
	var peak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		baseline := heapBytes()
		stop := sampleHeap(&peak, baseline)
		b.StartTimer()
		plan, err := planparse.Parse(f, testOptions)
		b.StopTimer()
		stop()
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if len(plan.Summary.Resources) != benchResources {
			b.Fatalf("%d resources in the summary", len(plan.Summary.Resources))
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(info.Size())/(1<<20), "json-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak)/float64(info.Size()), "peak/json")
}

// BenchmarkTerraformShowJSON10k times `terraform show -json` of the same
// saved plan, the cost seb's own work is compared with.
func BenchmarkTerraformShowJSON10k(b *testing.B) {
	dir, bin := benchPlan(b)
	cliConfig := filepath.Join(b.TempDir(), "terraform.rc")
	if err := os.WriteFile(cliConfig, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, bin, "show", "-json", "plan.tfplan")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+cliConfig, "CHECKPOINT_DISABLE=1")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = nil, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			b.Fatalf("terraform show -json: %v\n%s", err, stderr.String())
		}
	}
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
