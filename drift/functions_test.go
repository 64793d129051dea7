package drift_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/seb-broker/seb/drift"
)

// TestFunctionRulesMatchTerraform holds admission's function lists against
// the functions the Terraform binary in use says it has: each listed name
// is one of Terraform's, and each of Terraform's is admitted, checked or
// refused on purpose — a Terraform with a new function fails here until
// someone decides what it may do.
func TestFunctionRulesMatchTerraform(t *testing.T) {
	bin, err := drift.FindTerraform(context.Background(), drift.FindOptions{Path: os.Getenv("SEB_TERRAFORM")})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "metadata", "functions", "-json")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(t.TempDir(), "none.rc"), "CHECKPOINT_DISABLE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("%s cannot list its functions (metadata functions came in Terraform 1.8): %v", bin, err)
	}
	var meta struct {
		Signatures map[string]json.RawMessage `json:"function_signatures"`
	}
	if err := json.Unmarshal(out, &meta); err != nil || len(meta.Signatures) == 0 {
		t.Fatalf("metadata functions -json: %v (%d functions)", err, len(meta.Signatures))
	}
	known, files, refused := drift.FunctionRules()
	listed := map[string]bool{}
	for name := range known {
		listed[name] = true
	}
	for name := range files {
		listed[name] = true
	}
	for name := range refused {
		listed[name] = true
	}
	var unclassified []string
	for name := range meta.Signatures {
		name = strings.TrimPrefix(name, "core::")
		if !listed[name] {
			unclassified = append(unclassified, name)
		}
	}
	sort.Strings(unclassified)
	if len(unclassified) > 0 {
		t.Errorf("functions of %s that admission neither admits, checks nor refuses (so it refuses them as unknown): %v", bin, unclassified)
	}
	for name := range listed {
		if _, ok := meta.Signatures[name]; !ok {
			t.Errorf("admission lists %s(), which %s does not have", name, bin)
		}
	}
}
