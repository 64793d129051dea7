package drift

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAllowlistRefuses: what an agent would try first, each refused with
// the file and line it is on and why.
func TestAllowlistRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // the refusal's text, after "configuration: "
	}{
		// Block types seb does not know, from a newer Terraform or not.
		{"action block", map[string]string{"main.tf": "action \"aws_lambda_invoke\" \"x\" {\n  config {}\n}\n"}, `main.tf line 1: Unsupported block type`},
		{"ephemeral resource", map[string]string{"main.tf": "\nephemeral \"random_password\" \"p\" {\n  length = 8\n}\n"}, `main.tf line 2: Unsupported block type`},
		{"top-level argument", map[string]string{"main.tf": "x = 1\n"}, `main.tf line 1: Unsupported argument`},
		{"unknown block in JSON", map[string]string{"main.tf.json": "{\n  \"action\": {}\n}\n"}, `main.tf.json line 2: Extraneous JSON object property: No argument or block type is named "action"`},
		// The terraform block.
		{"backend", map[string]string{"main.tf": "terraform {\n  backend \"s3\" {}\n}\n"}, `main.tf line 2: declares backend "s3"`},
		{"backend in a child module", map[string]string{"main.tf": "module \"m\" {\n  source = \"./m\"\n}\n", "m/main.tf": "terraform {\n  backend \"http\" {}\n}\n"}, `m/main.tf line 2: declares backend "http"`},
		{"cloud", map[string]string{"main.tf": "terraform {\n  cloud {}\n}\n"}, `main.tf line 2: declares a cloud block`},
		{"provider_meta", map[string]string{"main.tf": "terraform {\n  provider_meta \"x\" {}\n}\n"}, `main.tf line 2: Unsupported block type`},
		{"experiments", map[string]string{"main.tf": "terraform {\n  experiments = [x]\n}\n"}, `main.tf line 2: Unsupported argument`},
		{"backend in JSON", map[string]string{"main.tf.json": "{\"terraform\": {\n\"backend\": {\"http\": {}}}}"}, `main.tf.json line 2: declares backend "http"`},
		// Provisioners, wherever they are.
		{"provisioner", map[string]string{"main.tf": "resource \"terraform_data\" \"x\" {\n  provisioner \"local-exec\" {\n    command = \"id\"\n  }\n}\n"}, `main.tf line 2: resource terraform_data.x has a "local-exec" provisioner`},
		{"connection", map[string]string{"main.tf": "resource \"terraform_data\" \"x\" {\n  connection {\n    host = \"h\"\n  }\n}\n"}, `main.tf line 2: resource terraform_data.x has a connection block`},
		{"provisioner in a removed block", map[string]string{"main.tf": "removed {\n  from = terraform_data.x\n  provisioner \"local-exec\" {\n    when = destroy\n    command = \"id\"\n  }\n}\n"}, `main.tf line 3: removed has a "local-exec" provisioner`},
		{"provisioner nested in a provider block", map[string]string{"main.tf": "resource \"x\" \"y\" {\n  spec {\n    provisioner \"local-exec\" {\n      command = \"id\"\n    }\n  }\n}\n"}, `main.tf line 3:`},
		{"dynamic provisioner", map[string]string{"main.tf": "resource \"x\" \"y\" {\n  dynamic \"provisioner\" {\n    for_each = [1]\n    content {}\n  }\n}\n"}, `main.tf line 2: resource x.y generates provisioner blocks`},
		{"provisioner in JSON", map[string]string{"main.tf.json": "{\"resource\": {\"terraform_data\": {\"x\": {\n\"provisioner\": [{\"local-exec\": {\"command\": \"id\"}}]}}}}"}, `main.tf.json line 2: resource.terraform_data.x has a provisioner`},
		{"provisioner in JSON spelled with an escape", map[string]string{"main.tf.json": `{"removed": [{"from": "x.y", "\u0070rovisioner": []}]}`}, `main.tf.json line 1: removed has a provisioner`},
		{"dynamic provisioner in JSON", map[string]string{"main.tf.json": `{"resource": {"x": {"y": {"dynamic": {"provisioner": {"content": {}}}}}}}`}, `has a provisioner`},
		// Reading another state.
		{"terraform_remote_state", map[string]string{"main.tf": "\n\ndata \"terraform_remote_state\" \"k\" {\n  backend = \"local\"\n}\n"}, `main.tf line 3: data "terraform_remote_state" reads another state`},
		{"terraform_remote_state in a check block", map[string]string{"main.tf": "check \"c\" {\n  data \"terraform_remote_state\" \"k\" {\n    backend = \"local\"\n  }\n}\n"}, `main.tf line 2: data "terraform_remote_state"`},
		{"terraform_remote_state in JSON", map[string]string{"main.tf.json": `{"data": {"terraform_remote_state": {"k": {"backend": "local"}}}}`}, `main.tf.json line 1: data "terraform_remote_state"`},
		// Providers.
		{"provider endpoint", map[string]string{"main.tf": "provider \"sandbox\" {\n  alias = \"a\"\n  endpoint = \"http://evil.invalid\"\n}\n"}, `main.tf line 3: provider "sandbox" sets "endpoint"`},
		{"provider nested block", map[string]string{"main.tf": "provider \"aws\" {\n  assume_role {\n    role_arn = \"x\"\n  }\n}\n"}, `main.tf line 1: provider "aws" may set nothing but alias`},
		{"provider endpoint in JSON", map[string]string{"main.tf.json": `{"provider": {"sandbox": {"endpoint": "http://evil.invalid"}}}`}, `provider "sandbox" sets "endpoint"`},
		// Modules.
		{"registry module", map[string]string{"main.tf": "module \"m\" {\n  source = \"hashicorp/consul/aws\"\n}\n"}, `main.tf line 2: module "m": source "hashicorp/consul/aws" is not a local directory`},
		{"module version", map[string]string{"main.tf": "module \"m\" {\n  source = \"./m\"\n  version = \"1.0\"\n}\n", "m/main.tf": ""}, `main.tf line 3: module "m" sets a version`},
		{"computed module source", map[string]string{"main.tf": "module \"m\" {\n  source = \"./${var.x}\"\n}\n"}, `main.tf line 2: module "m": source must be a literal path`},
		{"module outside the bundle", map[string]string{"main.tf": "module \"m\" {\n  source = \"../../etc\"\n}\n"}, `leaves the bundle`},
		{"module with a block", map[string]string{"main.tf": "module \"m\" {\n  source = \"./m\"\n  x {\n  }\n}\n", "m/main.tf": ""}, `main.tf line 3: Unexpected "x" block`},
		{"git module in JSON", map[string]string{"main.tf.json": `{"module": {"m": {"source": "git::https://example.invalid/m.git"}}}`}, `main.tf.json line 1: module "m": source "git::https://example.invalid/m.git" is not a local directory`},
		// Functions: known built-ins only.
		{"plantimestamp", map[string]string{"main.tf": "output \"t\" {\n  value = plantimestamp()\n}\n"}, `main.tf line 2: plantimestamp(): its value changes at every plan`},
		{"bcrypt", map[string]string{"main.tf": "locals {\n  h = bcrypt(\"x\")\n}\n"}, `main.tf line 2: bcrypt(): its value changes at every plan`},
		{"templatestring", map[string]string{"main.tf": "locals {\n  t = \"$${file(\\\"/etc/passwd\\\")}\"\n  v = templatestring(local.t, {})\n}\n"}, `main.tf line 3: templatestring(): it renders a template made while Terraform runs`},
		{"abspath", map[string]string{"main.tf": "output \"p\" {\n  value = abspath(\".\")\n}\n"}, `main.tf line 2: abspath(): its value depends on the machine`},
		{"provider-defined function", map[string]string{"main.tf": "output \"p\" {\n  value = provider::sandbox::secret(\"x\")\n}\n"}, `main.tf line 2: provider::sandbox::secret(): provider-defined functions`},
		{"unknown function", map[string]string{"main.tf": "output \"p\" {\n  value = readenv(\"HOME\")\n}\n"}, `main.tf line 2: seb does not know the function readenv()`},
		{"unknown function in JSON", map[string]string{"main.tf.json": "{\"output\": {\"p\": {\n\"value\": \"${readenv(\\\"HOME\\\")}\"}}}"}, `main.tf.json line 2: seb does not know the function readenv()`},
		{"function in a JSON key", map[string]string{"main.tf.json": `{"locals": {"m": {"${file(\"/etc/passwd\")}": 1}}}`}, `file(): file functions are not allowed in JSON`},
		{"plantimestamp in JSON", map[string]string{"main.tf.json": `{"output": {"t": {"value": "${plantimestamp()}"}}}`}, `plantimestamp(): its value changes at every plan`},
		// File functions.
		{"file outside the configuration", map[string]string{"main.tf": "output \"k\" {\n  value = file(\"${path.root}/../../keys/k.pem\")\n}\n"}, `main.tf line 2: file(): the path must be a literal inside`},
		{"file of a computed path", map[string]string{"main.tf": "locals {\n  p = \"/etc/passwd\"\n  k = file(local.p)\n}\n"}, `main.tf line 3: file(): the path must be a literal inside`},
		{"core::file of an absolute path", map[string]string{"main.tf": "locals {\n  env = core::file(\"/proc/self/environ\")\n}\n"}, `main.tf line 2: file(): the path must be a literal inside`},
		{"file in JSON", map[string]string{"main.tf.json": `{"output": {"k": {"value": "${file(\"a.txt\")}"}}}`, "a.txt": "x"}, `file(): file functions are not allowed in JSON`},
		{"fileset pattern", map[string]string{"main.tf": "output \"k\" {\n  value = fileset(path.module, \"../**\")\n}\n"}, `main.tf line 2: fileset(): the path must be a literal`},
		// templatefile reads a template: it is checked too.
		{"template calling file", map[string]string{"main.tf": "output \"k\" {\n  value = templatefile(\"t.tpl\", {})\n}\n", "t.tpl": "ok\n${file(\"/proc/self/environ\")}\n"}, `t.tpl line 2: file(): the path must be a literal inside the configuration`},
		{"template calling an unknown function", map[string]string{"main.tf": "output \"k\" {\n  value = templatefile(\"${path.module}/t.tpl\", {})\n}\n", "t.tpl": "%{ for x in readenv() }${x}%{ endfor }"}, `t.tpl line 1: seb does not know the function readenv()`},
		{"template calling templatefile", map[string]string{"main.tf": "output \"k\" {\n  value = templatefile(\"t.tpl\", {})\n}\n", "t.tpl": "${templatefile(\"t.tpl\", {})}"}, `t.tpl line 1: templatefile() may not be called from a template`},
		{"template outside the bundle", map[string]string{"main.tf": "output \"k\" {\n  value = templatefile(\"../x.tpl\", {})\n}\n"}, `main.tf line 2: templatefile(): the path must be a literal`},
		{"missing template", map[string]string{"main.tf": "output \"k\" {\n  value = templatefile(\"nope.tpl\", {})\n}\n"}, `main.tf line 2: templatefile(): the template nope.tpl is not a file of the bundle`},
		{"template that does not parse", map[string]string{"main.tf": "output \"k\" {\n  value = templatefile(\"t.tpl\", {})\n}\n", "t.tpl": "${"}, `templatefile(): the template t.tpl does not parse`},
		// JSON read as Terraform reads it.
		{"duplicate JSON key", map[string]string{"main.tf.json": "{\"terraform\": {\"backend\": {\"http\": {}}},\n\"terraform\": {}}"}, `main.tf.json line 2: the key "terraform" appears twice`},
		{"JSON that does not parse", map[string]string{"main.tf.json": `{"output": `}, `main.tf.json does not parse`},
		{"native that does not parse", map[string]string{"main.tf": "resource \"x\" {"}, `main.tf does not parse`},
		// Strings Terraform reads as expressions, and type constraints.
		{"function in a JSON import target", map[string]string{"main.tf.json": `{"import": [{"to": "terraform_data.x[file(\"/etc/passwd\")]", "id": "a"}]}`}, `import.to: file() where Terraform expects a reference`},
		{"function in a JSON replace_triggered_by", map[string]string{"main.tf.json": `{"resource": {"terraform_data": {"x": {"lifecycle": {"replace_triggered_by": ["file(\"/etc/passwd\")"]}}}}}`}, `file() where Terraform expects a reference`},
		{"function in a JSON type", map[string]string{"main.tf.json": `{"variable": {"v": {"type": "object({a = optional(string, file(\"/etc/passwd\"))})"}}}`}, `file() in a type constraint`},
		{"function in a type default", map[string]string{"main.tf": "variable \"v\" {\n  type = object({ a = optional(string, file(\"/etc/passwd\")) })\n}\n"}, `main.tf line 2: file() in a type constraint`},
		// Meta-arguments seb does not know.
		{"unknown lifecycle argument", map[string]string{"main.tf": "resource \"x\" \"y\" {\n  lifecycle {\n    action_trigger = 1\n  }\n}\n"}, `main.tf line 3: Unsupported argument`},
		{"unknown variable argument", map[string]string{"main.tf": "variable \"v\" {\n  secret_source = \"env\"\n}\n"}, `main.tf line 2: Unsupported argument`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkHCL(writeFiles(t, tt.files))
			if err == nil {
				t.Fatalf("admitted; want a refusal saying %q", tt.want)
			}
			if !IsRefusal(err) {
				t.Errorf("%v is not a refusal: the broker would blame itself", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("refusal %q\nwant it to say %q", err, tt.want)
			}
		})
	}
}

// TestAllowlistAdmits: the language a real configuration uses passes —
// seb's fixtures, and the constructs an allowlist could refuse by
// mistake.
func TestAllowlistAdmits(t *testing.T) {
	fixtures, err := filepath.Glob("../fixtures/terraform/*")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("fixtures: %v, %v", fixtures, err)
	}
	for _, dir := range fixtures {
		if err := checkHCL(dir); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
	files := map[string]string{
		"main.tf": `terraform {
  required_version = ">= 1.5"
  required_providers {
    sandbox = {
      source = "seb.invalid/seb/sandbox"
    }
  }
}

provider "sandbox" {
  alias = "second"
}

variable "replicas" {
  type     = number
  default  = 2
  nullable = false
  validation {
    condition     = var.replicas > 0
    error_message = "At least one."
  }
}

locals {
  names = toset(["a", "b"])
  tags  = merge({ team = "web" }, { env = lower("PROD") })
  when  = timestamp()
}

resource "sandbox_service" "web" {
  for_each = local.names
  name     = "web-${each.key}"
  image    = format("nginx:%s", "1.27")
  replicas = var.replicas
  provider = sandbox.second

  spec {
    lifecycle {
      post_start = "x"
    }
    connection {
      port = 80
    }
  }
  dynamic "port" {
    for_each = [80, 443]
    content {
      number = port.value
    }
  }

  lifecycle {
    create_before_destroy = true
    ignore_changes        = [image]
    precondition {
      condition     = length(local.names) > 0
      error_message = "names"
    }
  }
  depends_on = [terraform_data.seed]
}

resource "terraform_data" "seed" {
  input = try(jsondecode(file("data/seed.json")), {})
}

data "sandbox_service" "existing" {
  name = "web"
}

module "child" {
  source   = "./modules/child"
  names    = local.names
  template = templatefile("${path.module}/modules/child/t.tpl", { names = local.names })
}

moved {
  from = sandbox_service.old
  to   = sandbox_service.web["a"]
}

import {
  to = sandbox_service.imported
  id = "svc-1"
}

removed {
  from = sandbox_service.gone
  lifecycle {
    destroy = false
  }
}

check "health" {
  data "sandbox_service" "probe" {
    name = "web"
  }
  assert {
    condition     = data.sandbox_service.probe.replicas > 0
    error_message = "down"
  }
}

output "names" {
  value       = [for s in sandbox_service.web : upper(s.name)]
  description = "the services"
  sensitive   = false
  precondition {
    condition     = true
    error_message = "never"
  }
}
`,
		"data/seed.json":          `{"a": 1}`,
		"modules/child/main.tf":   "variable \"names\" {}\nvariable \"template\" {}\noutput \"n\" {\n  value = fileexists(\"${path.module}/t.tpl\")\n}\n",
		"modules/child/t.tpl":     "%{ for n in names }${upper(n)}\n%{ endfor }",
		"modules/child/x.tf.json": `{"locals": {"// comment": "note", "k": "${join(\",\", [\"a\", \"b\"])}"}, "output": {"o": {"value": "${local.k}"}}}`,
	}
	if err := checkHCL(writeFiles(t, files)); err != nil {
		t.Fatal(err)
	}
}
