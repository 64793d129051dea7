package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// planConfiguration is what seb reads of a plan's JSON: Terraform's own
// reading of the configuration it planned, and the actions it would
// invoke.
type planConfiguration struct {
	Configuration struct {
		ProviderConfig map[string]struct {
			Name              string          `json:"name"`
			Alias             string          `json:"alias"`
			Expressions       json.RawMessage `json:"expressions"`
			VersionConstraint string          `json:"version_constraint"`
		} `json:"provider_config"`
		RootModule configModule `json:"root_module"`
	} `json:"configuration"`
	// ActionInvocations are Terraform 1.14's actions: seb does not yet
	// summarize them, so it cannot certify them.
	ActionInvocations json.RawMessage `json:"action_invocations"`
}

type configModule struct {
	Resources []struct {
		Address      string `json:"address"`
		Mode         string `json:"mode"`
		Type         string `json:"type"`
		Provisioners []struct {
			Type string `json:"type"`
		} `json:"provisioners"`
	} `json:"resources"`
	ModuleCalls map[string]struct {
		Source            string       `json:"source"`
		VersionConstraint string       `json:"version_constraint"`
		Module            configModule `json:"module"`
	} `json:"module_calls"`
}

// RefusedByTerraformsReading checks a plan's JSON the way Terraform read
// the configuration, beside admission's checks of its syntax: refused are
// a provisioner on any resource (in the root module or any module call),
// terraform_remote_state, a module call whose source is not a directory
// of the bundle, a provider configuration that sets anything but an alias
// (provider_config lists every module's), and a plan that would invoke
// actions. It returns why, or "" when nothing is refused.
func RefusedByTerraformsReading(plan []byte) (string, error) {
	var p planConfiguration
	if err := json.NewDecoder(bytes.NewReader(plan)).Decode(&p); err != nil {
		return "", fmt.Errorf("read the plan's configuration: %w", err)
	}
	if len(p.ActionInvocations) > 0 && !bytes.Equal(p.ActionInvocations, []byte("null")) && !bytes.Equal(p.ActionInvocations, []byte("[]")) {
		return "Terraform's plan invokes actions; seb does not yet show or certify actions, so it refuses them", nil
	}
	var found []string
	var walk func(prefix string, m configModule, depth int)
	walk = func(prefix string, m configModule, depth int) {
		if depth > 64 {
			found = append(found, "modules nested more than 64 deep")
			return
		}
		for _, r := range m.Resources {
			for _, pr := range r.Provisioners {
				found = append(found, fmt.Sprintf("a %q provisioner on %s%s; provisioners run commands at apply time and are not part of the certified diff", pr.Type, prefix, r.Address))
			}
			if r.Mode == "data" && r.Type == "terraform_remote_state" {
				found = append(found, fmt.Sprintf("%s%s, which reads another state through a backend", prefix, r.Address))
			}
		}
		for name, call := range m.ModuleCalls {
			if !strings.HasPrefix(call.Source, "./") && !strings.HasPrefix(call.Source, "../") || call.VersionConstraint != "" {
				found = append(found, fmt.Sprintf("%smodule.%s from %q, which is not a directory of the bundle", prefix, name, call.Source))
			}
			walk(prefix+"module."+name+".", call.Module, depth+1)
		}
	}
	walk("", p.Configuration.RootModule, 0)
	for key, pc := range p.Configuration.ProviderConfig {
		if e := bytes.TrimSpace(pc.Expressions); len(e) > 0 && !bytes.Equal(e, []byte("{}")) && !bytes.Equal(e, []byte("null")) {
			found = append(found, fmt.Sprintf("provider configuration %s setting arguments; a provider's endpoint and credentials come from the workspace's credential profile", key))
		}
	}
	if len(found) == 0 {
		return "", nil
	}
	slices.Sort(found)
	return "Terraform's reading of the configuration shows " + found[0], nil
}
