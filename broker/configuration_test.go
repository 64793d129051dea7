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
		{"remote state", `{"configuration":{"root_module":{"resources":[{"address":"data.terraform_remote_state.s","mode":"data","type":"terraform_remote_state"}]}}}`, "reads another state"},
		{"registry module", `{"configuration":{"root_module":{"module_calls":{"m":{"source":"hashicorp/consul/aws","module":{}}}}}}`, `module.m from "hashicorp/consul/aws"`},
		{"module with a version", `{"configuration":{"root_module":{"module_calls":{"m":{"source":"./m","version_constraint":"1.0","module":{}}}}}}`, `module.m from "./m"`},
		{"local module", `{"configuration":{"root_module":{"module_calls":{"m":{"source":"./m","module":{}}}}}}`, ""},
		{"provider endpoint", `{"configuration":{"provider_config":{"sandbox":{"name":"sandbox","expressions":{"endpoint":{"constant_value":"http://evil"}}}}}}`, "provider configuration sandbox setting arguments"},
		{"provider alias only", `{"configuration":{"provider_config":{"sandbox.a":{"name":"sandbox","alias":"a"}}}}`, ""},
		{"actions", `{"action_invocations":[{"address":"action.x.y"}]}`, "invokes actions"},
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

// TestRefusedByTerraformsReadingRealPlans: real plans written by other
// projects, each refused for what Terraform's reading shows.
func TestRefusedByTerraformsReadingRealPlans(t *testing.T) {
	for file, want := range map[string]string{
		"terraform-compliance__cli__tests-functional-test_issue-249-plan.out.json":                             "data.terraform_remote_state.mybu_sandbox",
		"AlexTzk__gcp-infrastructure__plan.json":                                                               `module.project-services from "terraform-google-modules/`,
		"bridgecrewio__checkov__plan_with_deleted_resources-tfplan.json":                                       "provider configuration aws setting arguments",
		"terraform-compliance__cli__tests-functional-test_non_created_module_resource_parameter-plan.out.json": `from "git::ssh://`,
	} {
		plan, err := os.ReadFile("../../shared/plans/" + file)
		if os.IsNotExist(err) {
			t.Skip("../shared/plans is not here")
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, err := broker.RefusedByTerraformsReading(plan); err != nil || !strings.Contains(got, want) {
			t.Errorf("%s: %q, %v; want one saying %q", file, got, err, want)
		}
	}
}
