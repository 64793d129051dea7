package policy_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/seb-broker/seb/internal/benchplan"
	"github.com/seb-broker/seb/policy"
)

// BenchmarkPolicy10k evaluates the example policies (fixtures/policy) on
// seb's summary of the plan of 10,000 resource changes: the input is
// converted to OPA's value form once, then every rule reads it. It
// reports the peak heap of an evaluation as a multiple of the summary's
// canonical JSON size (target: at most 2) and its time (target: at most
// 0.5 s).
func BenchmarkPolicy10k(b *testing.B) {
	dir, _ := benchplan.Dir(b)
	plan := parsePlan(b, filepath.Join(dir, "plan.json"))
	size := float64(len(plan.Summary.Canonical()))
	set, err := policy.Load("../fixtures/policy")
	if err != nil {
		b.Fatal(err)
	}
	in := &policy.Input{Workspace: "bench", Summary: plan.Summary, DiffDigest: plan.Digest, Drift: plan.Drift}
	var peak uint64
	b.ResetTimer()
	for range b.N {
		var d *policy.Decision
		peak = max(peak, benchplan.PeakHeap(func() { d, err = set.Eval(context.Background(), in) }))
		if err != nil {
			b.Fatal(err)
		}
		if d.AutoCertify || len(d.Deny) != 0 {
			b.Fatalf("decision %+v", d)
		}
	}
	b.StopTimer()
	b.ReportMetric(size/(1<<20), "summary-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak)/size, "peak/summary")
}
