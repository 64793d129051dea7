package drift

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheckConfig feeds the configuration checks arbitrary files, in both
// syntaxes: they refuse or accept, and never panic or fail for the
// broker's own reasons.
func FuzzCheckConfig(f *testing.F) {
	for _, seed := range []string{
		`{"resource":{"terraform_data":{"x":{"\u0070rovisioner":[{"local-exec":{"command":"id"}}]}}}}`,
		`{"terraform":{"backend":{"http":{}}},"terraform":{}}`,
		`{"output":{"k":{"value":"${\u0066ile(\"/etc/passwd\")}"}}}`,
		`{"data":{"terraform_remote_state":{"k":{}}}}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"output \"t\" { value = plantimestamp() }\n",
		"removed {\n from = x.y\n provisioner \"local-exec\" { command = \"id\" }\n}\n",
		"data \"terraform_remote_state\" \"k\" {}\n",
		"output \"k\" {\n  value = templatefile(\"main.tf\", {})\n}\n",
		"check \"c\" {\n  data \"x\" \"y\" {}\n  assert {\n    condition = true\n    error_message = \"m\"\n  }\n}\n",
		"variable \"v\" {\n  type = map(object({ a = optional(string) }))\n}\n",
		`{"locals": {"${file(\"x\")}": 1}, "module": {"m": {"source": "./m", "version": "1"}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, name := range []string{"main.tf.json", "main.tf"} {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := checkHCL(dir); err != nil && !IsRefusal(err) {
				t.Errorf("%s: %v is not a refusal", name, err)
			}
		}
	})
}
