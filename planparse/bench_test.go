package planparse_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/seb-broker/seb/internal/benchplan"
	"github.com/seb-broker/seb/planparse"
)

// BenchmarkSummarize10k parses, summarizes and digests a plan of 10,000
// resource changes straight from its file, and reports the peak heap the
// parse adds as a multiple of the JSON size (target: under 3).
func BenchmarkSummarize10k(b *testing.B) {
	dir, _ := benchplan.Dir(b)
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
		var plan *planparse.Plan
		peak = max(peak, benchplan.PeakHeap(func() {
			b.StartTimer()
			plan, err = planparse.Parse(f, testOptions)
			b.StopTimer()
		}))
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if len(plan.Summary.Resources) != benchplan.Resources {
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
	dir, bin := benchplan.Dir(b)
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
