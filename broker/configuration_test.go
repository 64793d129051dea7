package broker_test

import (
	"os"
	"strings"
	"testing"

	"github.com/seb-broker/seb/broker"
)

func TestRefusedByTerraformsReading(t *testing.T) {
	tests := []struct {
		name, plan, want string
	}{
		{"none", `{"configuration":{"root_module":{"resources":[{"address":"a.b"}]}}}`, ""},
		{"root", `{"configuration":{"root_module":{"resources":[{"address":"a.b","provisioners":[{"type":"local-exec"}]}]}}}`, `"local-exec" provisioner on a.b`},
		{"nested module", `{"configuration":{"root_module":{"module_calls":{"m":{"module":{"module_calls":{"n":{"module":{"resources":[{"address":"x.y","provisioners":[{"type":"remote-exec"}]}]}}}}}}}}}`, `"remote-exec" provisioner on module.m.module.n.x.y`},
		{"no configuration", `{"format_version":"1.2"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := broker.RefusedByTerraformsReading([]byte(tt.plan))
			if err != nil || (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("%q, %v; want one saying %q", got, err, tt.want)
			}
		})
	}
	if _, err := broker.RefusedByTerraformsReading([]byte("{")); err == nil {
		t.Error("a truncated plan was read")
	}
}

// TestRefusedByTerraformsReadingRealPlan: a real plan whose module has a
// local-exec provisioner is refused, naming it.
func TestRefusedByTerraformsReadingRealPlan(t *testing.T) {
	plan, err := os.ReadFile("../../shared/plans/Halimer__opa-oci-cis-benchmark-rules__tfplan_large.json")
	if os.IsNotExist(err) {
		t.Skip("../shared/plans is not here")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := broker.RefusedByTerraformsReading(plan)
	if err != nil || !strings.Contains(got, `"local-exec" provisioner on`) || !strings.Contains(got, "null_resource.wait_on_compartments") {
		t.Errorf("%q, %v", got, err)
	}
}
