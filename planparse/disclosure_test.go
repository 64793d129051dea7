package planparse_test

import (
	"encoding/json"
	"strings"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/seb-broker/seb/planparse"
)

// discloseDoc is a plan whose diff holds a value the provider marks
// sensitive (password), one inside a nested block it marks (auth[0].token),
// one the configuration hid (image, through sensitive()), and values known
// only after apply: one from a reference, one computed by the provider.
const discloseDoc = `{
  "format_version": "1.2",
  "resource_changes": [{
    "address": "x_db.main", "mode": "managed", "type": "x_db", "name": "main",
    "provider_name": "example.com/x/x",
    "change": {
      "actions": ["create"], "before": null,
      "after": {"password": "p", "image": "evil/cryptominer:latest", "tags": {"a": "b"}, "auth": [{"token": "t", "user": "u"}]},
      "after_unknown": {"endpoint": true, "id": true},
      "after_sensitive": {"password": true, "image": true, "auth": [{"token": true}]}
    }
  }],
  "configuration": {"root_module": {"resources": [{
    "address": "x_db.main", "mode": "managed", "type": "x_db", "name": "main",
    "expressions": {"endpoint": {"references": ["terraform_data.seed.output", "terraform_data.seed"]}, "image": {"constant_value": "x"}}
  }]}}
}`

func TestDisclose(t *testing.T) {
	plan, err := planparse.Parse(strings.NewReader(discloseDoc), planparse.Options{SensitiveKey: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	var ps tfjson.ProviderSchemas
	schemaDoc := `{"format_version":"1.0","provider_schemas":{"example.com/x/x":{"resource_schemas":{"x_db":{"version":0,"block":{
	  "attributes":{"password":{"type":"string","sensitive":true},"image":{"type":"string"},"endpoint":{"type":"string","computed":true},"id":{"type":"string","computed":true},"tags":{"type":["map","string"]}},
	  "block_types":{"auth":{"nesting_mode":"list","block":{"attributes":{"token":{"type":"string","sensitive":true},"user":{"type":"string"}}}}}}}}}}}`
	if err := json.Unmarshal([]byte(schemaDoc), &ps); err != nil {
		t.Fatal(err)
	}
	schemas := planparse.SchemasFor(&ps, plan.Summary)
	d, err := planparse.Disclose([]byte(discloseDoc), plan.Summary, schemas)
	if err != nil {
		t.Fatal(err)
	}
	hidden := map[string]string{}
	for _, h := range d.Hidden {
		hidden[h.Path] = h.By
	}
	want := map[string]string{"password": "provider", "auth[0].token": "provider", "image": "configuration"}
	for path, by := range want {
		if hidden[path] != by {
			t.Errorf("%s: hidden by %q, want %q (all: %+v)", path, hidden[path], by, d.Hidden)
		}
	}
	if len(d.Hidden) != len(want) {
		t.Errorf("hidden %+v, want %d", d.Hidden, len(want))
	}
	if got := d.HiddenByConfig(); len(got) != 1 || got[0].Path != "image" {
		t.Errorf("hidden by the configuration: %+v", got)
	}
	unknown := map[string][]string{}
	for _, u := range d.Unknown {
		unknown[u.Path] = u.References
	}
	if refs := unknown["endpoint"]; len(refs) != 2 || refs[0] != "terraform_data.seed.output" {
		t.Errorf("endpoint's references: %v (all: %+v)", refs, d.Unknown)
	}
	if refs, ok := unknown["id"]; !ok || refs != nil {
		t.Errorf("id: %v, %v; want known after apply, computed by the provider", refs, ok)
	}

	// Without schemas, nothing is assumed sensitive by nature.
	d, err = planparse.Disclose([]byte(discloseDoc), plan.Summary, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.HiddenByConfig(); len(got) != 3 {
		t.Errorf("without schemas: %+v, want all three hidden by the configuration", got)
	}
}
