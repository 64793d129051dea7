package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/seb-broker/seb/planparse"
)

// realPlans lists the real plans of ../shared/plans, written by other
// projects; none when that folder is not here.
func realPlans() []string {
	paths, _ := filepath.Glob("../../shared/plans/*.json")
	return paths
}

// parsePlan parses a plan file as seb does.
func parsePlan(t testing.TB, path string) *planparse.Plan {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plan, err := planparse.Parse(f, planparse.Options{SensitiveKey: []byte("a key for sensitive values")})
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return plan
}
