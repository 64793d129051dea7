package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// planConfiguration is what seb reads of the configuration section of a
// plan's JSON: Terraform's own reading of the configuration it planned.
type planConfiguration struct {
	Configuration struct {
		RootModule configModule `json:"root_module"`
	} `json:"configuration"`
}

type configModule struct {
	Resources []struct {
		Address      string `json:"address"`
		Provisioners []struct {
			Type string `json:"type"`
		} `json:"provisioners"`
	} `json:"resources"`
	ModuleCalls map[string]struct {
		Module configModule `json:"module"`
	} `json:"module_calls"`
}

// RefusedByTerraformsReading checks a plan's JSON the way Terraform read
// the configuration, beside admission's checks of its syntax: a
// provisioner on any resource, in the root module or any module call, is
// refused. It returns why, or "" when nothing is refused.
func RefusedByTerraformsReading(plan []byte) (string, error) {
	var p planConfiguration
	if err := json.NewDecoder(bytes.NewReader(plan)).Decode(&p); err != nil {
		return "", fmt.Errorf("read the plan's configuration: %w", err)
	}
	var found []string
	var walk func(prefix string, m configModule, depth int)
	walk = func(prefix string, m configModule, depth int) {
		if depth > 64 {
			return
		}
		for _, r := range m.Resources {
			for _, pr := range r.Provisioners {
				found = append(found, fmt.Sprintf("a %q provisioner on %s%s", pr.Type, prefix, r.Address))
			}
		}
		for name, call := range m.ModuleCalls {
			walk(prefix+"module."+name+".", call.Module, depth+1)
		}
	}
	walk("", p.Configuration.RootModule, 0)
	if len(found) == 0 {
		return "", nil
	}
	slices.Sort(found)
	return fmt.Sprintf("Terraform's reading of the configuration shows %s; provisioners run commands at apply time and are not part of the certified diff", found[0]), nil
}
