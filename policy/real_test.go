package policy_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// TestRealPlans evaluates a platform team's policy (testdata/real) on the
// real plans of ../shared/plans, written by other projects: every plan is
// decided on, and between them they exercise a denial (a deletion), a
// warning (an opening to 0.0.0.0/0) and approvals from a group (an
// identity change).
func TestRealPlans(t *testing.T) {
	paths := realPlans()
	if len(paths) == 0 {
		t.Skip("no real-world plans in ../../shared/plans")
	}
	set, err := policy.Load("testdata/real")
	if err != nil {
		t.Fatal(err)
	}
	var denied, warned, grouped int
	for _, path := range paths {
		plan := parsePlan(t, path)
		d, err := set.Eval(context.Background(), &policy.Input{Workspace: "prod", Summary: plan.Summary, DiffDigest: plan.Digest, Drift: plan.Drift})
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
			continue
		}
		deletes := 0
		for _, r := range plan.Summary.Resources {
			if r.Action == planparse.ActionDelete || r.Action == planparse.ActionReplace {
				deletes++
			}
		}
		if len(d.Deny) != deletes {
			t.Errorf("%s: %d denials for %d deletions: %v", filepath.Base(path), len(d.Deny), deletes, d.Deny)
		}
		if len(d.Deny) > 0 {
			denied++
		}
		if len(d.Warn) > 0 {
			warned++
		}
		if d.Approvals != nil && d.Approvals.Groups[0] == "security" {
			grouped++
		}
	}
	if denied == 0 || warned == 0 || grouped == 0 {
		t.Errorf("over %d real plans: %d denied, %d warned, %d asked for security's approvals; want each at least once", len(paths), denied, warned, grouped)
	}
	t.Logf("%d real plans: %d denied, %d warned, %d needed security", len(paths), denied, warned, grouped)
}
