package broker_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
)

// The digests of testdata/config/full.hcl and of DefaultConfig. They pin
// the canonical form: changing it changes every deployment's digest, and so
// its policy epoch, which must be a deliberate decision.
const (
	configFullDigest    = "sha256:2589cf69103ab869941637ac383fa8ebaab01a38954abea34d1a55f917caa8f5"
	configDefaultDigest = "sha256:41cc2c6b29e3fac1d9f53d80f7c2482477ff9a9c7b5edcf730fce051437081e9"
)

// configExample is the example configuration, which describes the demo.
const configExample = "../fixtures/sandboxcloud/seb.hcl"

func readConfigFile(t *testing.T, path string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestParseConfigFull(t *testing.T) {
	setLegacySecrets(t)
	path := filepath.Join("testdata", "config", "full.hcl")
	got, err := broker.ParseConfig(readConfigFile(t, path), path)
	if err != nil {
		t.Fatal(err)
	}
	want := &broker.Config{
		DataDir:   "/var/lib/seb",
		Terraform: filepath.Join("testdata", "config", "bin", "tofu"),
		IssuerURL: "https://seb.example.com",
		Listen:    ":8443",
		ClockSkew: 2 * time.Minute,
		Workspaces: []broker.Workspace{
			{
				Name: "legacy",
				Credentials: broker.CredentialProfile{
					PlanSecrets:  map[string]string{"LEGACY_TOKEN": "read-only"},
					ApplySecrets: map[string]string{"LEGACY_TOKEN": "read-write"},
				},
				DriftMode:           drift.ModeDefault,
				CertificateLifetime: time.Hour,
				ApprovalsRequired:   0,
			},
			{
				Name: "prod",
				Credentials: broker.CredentialProfile{
					Audience:     "sts.amazonaws.com",
					TokenFileEnv: []string{"AWS_WEB_IDENTITY_TOKEN_FILE"},
					Env: map[string]string{
						"AWS_ROLE_ARN":          "arn:aws:iam::123456789012:role/seb-{phase}",
						"AWS_ROLE_SESSION_NAME": "seb-{execution}",
					},
					Lifetime: 10 * time.Minute,
				},
				DriftMode:           drift.ModeStrict,
				CertificateLifetime: 15 * time.Minute,
				ApprovalsRequired:   2,
				ProtectedActions:    []planparse.Action{planparse.ActionDelete, planparse.ActionForget, planparse.ActionReplace},
			},
		},
		Digest: configFullDigest,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseConfig(%s)\n got %+v\nwant %+v", path, got, want)
	}
}

func TestDefaultConfig(t *testing.T) {
	def := broker.DefaultConfig()
	if def.Digest != configDefaultDigest {
		t.Errorf("DefaultConfig().Digest = %s, want %s", def.Digest, configDefaultDigest)
	}
	for _, w := range def.Workspaces {
		if err := w.Credentials.Valid(); err != nil {
			t.Errorf("workspace %s: %v", w.Name, err)
		}
	}
	// The example file and a file that gives only what has no default
	// both say exactly the demo configuration, read as seb.hcl in the
	// working directory.
	for _, path := range []string{configExample, filepath.Join("testdata", "config", "minimal.hcl")} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			got, err := broker.ParseConfig(readConfigFile(t, path), "seb.hcl")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, def) {
				t.Errorf("ParseConfig(%s)\n got %+v\nwant DefaultConfig() %+v", path, got, def)
			}
		})
	}
	def.Workspaces[0].Credentials.Env["SANDBOX_ENDPOINT"] = "http://elsewhere"
	if broker.DefaultConfig().Workspaces[0].Credentials.Env["SANDBOX_ENDPOINT"] != "http://127.0.0.1:8081" {
		t.Error("DefaultConfig shares its values between calls")
	}
}

func TestLoadConfig(t *testing.T) {
	setLegacySecrets(t)
	got, err := broker.LoadConfig(configExample)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(filepath.Dir(configExample))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, ".seb"); got.DataDir != want {
		t.Errorf("DataDir = %q, want %q", got.DataDir, want)
	}
	if got.Digest != configDefaultDigest {
		t.Errorf("Digest = %s, want the default's %s: where the file lives must not matter", got.Digest, configDefaultDigest)
	}

	full, err := broker.LoadConfig(filepath.Join("testdata", "config", "full.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(full.Terraform) || !strings.HasSuffix(full.Terraform, filepath.Join("testdata", "config", "bin", "tofu")) {
		t.Errorf("Terraform = %q, want the absolute path of testdata/config/bin/tofu", full.Terraform)
	}

	_, err = broker.LoadConfig(filepath.Join(t.TempDir(), "seb.hcl"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadConfig(missing file) = %v, want fs.ErrNotExist", err)
	}
}

func TestConfigWorkspace(t *testing.T) {
	c := broker.DefaultConfig()
	w, ok := c.Workspace("sandbox")
	if !ok || !reflect.DeepEqual(w, c.Workspaces[0]) {
		t.Fatalf("Workspace(sandbox) = %+v, %v; want %+v, true", w, ok, c.Workspaces[0])
	}
	w.Credentials.Env["SANDBOX_ENDPOINT"] = "http://elsewhere"
	w.ProtectedActions[0] = planparse.ActionCreate
	if !reflect.DeepEqual(c, broker.DefaultConfig()) {
		t.Error("changing the returned workspace changed the configuration")
	}
	if w, ok := c.Workspace("prod"); ok {
		t.Errorf("Workspace(prod) = %+v, true; want false", w)
	}
}

func TestConfigDigest(t *testing.T) {
	setLegacySecrets(t)
	path := filepath.Join("testdata", "config", "full.hcl")
	base := string(readConfigFile(t, path))

	// The same configuration as full.hcl, written differently: comments,
	// layout, attribute and block order, list order, a duplicate dropped,
	// durations spelled otherwise, a default spelled out, another
	// file name, and relative paths against another directory.
	reformatted := `
// The legacy system has no OIDC.
workspace "legacy" {
  credentials {
    apply_secrets = {
      "LEGACY_TOKEN" = "env:LEGACY_TOKEN_RW"
    }
    plan_secrets = {LEGACY_TOKEN="env:LEGACY_TOKEN_RO"}
    env = {}
  }
  protected_actions = []
  drift_mode = "default"
  approvals_required = 0
}
/* production */
workspace "prod" {
  credentials {
    lifetime = "600s"
    env = { AWS_ROLE_SESSION_NAME = "seb-{execution}", AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/seb-{phase}" }
    token_file_env = [
      "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    audience = "sts.amazonaws.com"
  }
  protected_actions = ["forget", "delete", "replace"]
  approvals_required = 2
  certificate_lifetime = "0.25h"
  drift_mode = "strict"
}
clock_skew="120s"
listen=":8443"
issuer_url="https://seb.example.com/"
terraform="./bin/tofu"
data_dir="/var/lib/seb/"
`
	changed := []struct {
		name, old, new string
	}{
		{"approvals", "approvals_required   = 2", "approvals_required   = 3"},
		{"a protected action", `"forget", "delete"]`, `"read", "delete"]`},
		{"protected actions removed", `protected_actions  = []`, ``},
		{"an env value", `"seb-{execution}"`, `"seb-{workspace}-{execution}"`},
		{"an env variable added", `AWS_ROLE_ARN          =`, `AWS_REGION = "eu-west-1"
      AWS_ROLE_ARN          =`},
		{"a secret's name", `apply_secrets = { LEGACY_TOKEN = "file:secrets/legacy-rw" }`, `apply_secrets = { LEGACY_TOKEN_2 = "file:secrets/legacy-rw" }`},
		{"a workspace added", `workspace "legacy" {`, `workspace "staging" {
  credentials {
    plan_secrets = { TOKEN = "env:LEGACY_TOKEN_RO" }
  }
}

workspace "legacy" {`},
		{"a workspace renamed", `workspace "legacy"`, `workspace "legacy2"`},
		{"the drift mode", `"strict"`, `"default"`},
		{"a certificate lifetime", `"15m"`, `"16m"`},
		{"a token lifetime", `"10m"`, `"11m"`},
		{"the audience", `"sts.amazonaws.com"`, `"sts.example.com"`},
		{"the token file variable", `["AWS_WEB_IDENTITY_TOKEN_FILE"]`, `["AWS_WEB_IDENTITY_TOKEN_FILE", "TOKEN_FILE"]`},
		{"the clock skew", `"2m"`, `"3m"`},
		{"the issuer", `"https://seb.example.com/"`, `"https://seb.example.org/"`},
		{"hidden values allowed", `approvals_required   = 2`, `approvals_required   = 2
  allow_hidden_values  = true`},
	}

	digest := func(t *testing.T, src, filename string) string {
		t.Helper()
		c, err := broker.ParseConfig([]byte(src), filename)
		if err != nil {
			t.Fatal(err)
		}
		return c.Digest
	}
	want := digest(t, base, path)
	if got := digest(t, reformatted, filepath.Join("elsewhere", "seb.hcl")); got != want {
		t.Errorf("reformatted: digest %s, want %s", got, want)
	}
	for _, tt := range changed {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.old) {
				t.Fatalf("full.hcl has no %q", tt.old)
			}
			if got := digest(t, strings.Replace(base, tt.old, tt.new, 1), path); got == want {
				t.Errorf("digest unchanged: %s", got)
			}
		})
	}
	// How seb runs is not policy, and a secret's value is never
	// published: none of these kill the outstanding certificates.
	for _, tt := range []struct{ name, old, new string }{
		{"the listen address", `":8443"`, `":8444"`},
		{"the data directory", `"/var/lib/seb"`, `"/var/lib/seb2"`},
		{"the terraform binary", `"bin/tofu"`, `"bin/terraform"`},
		{"where a secret is", `"env:LEGACY_TOKEN_RO"`, `"env:LEGACY_TOKEN_RW"`},
	} {
		t.Run("not "+tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.old) {
				t.Fatalf("full.hcl has no %q", tt.old)
			}
			if got := digest(t, strings.Replace(base, tt.old, tt.new, 1), path); got != want {
				t.Errorf("digest changed: %s, was %s", got, want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		file string
		// at is where the error is, as file:line,column; want is in its
		// message.
		at, want string
		// count is how many diagnostics there are.
		count int
	}{
		{"unknown-attribute.hcl", "unknown-attribute.hcl:2,3", `Unsupported argument; An argument named "approvals" is not expected here`, 1},
		{"unknown-block.hcl", "unknown-block.hcl:3,1", `Unsupported block type; Blocks of type "policy" are not expected here`, 1},
		{"bad-duration.hcl", "bad-duration.hcl:2,26", `Invalid duration; certificate_lifetime: "1 hour" is not a duration`, 1},
		{"duration-out-of-range.hcl", "duration-out-of-range.hcl:1,14", `Duration out of range; clock_skew: 10m0s is outside 0s..5m0s`, 1},
		{"bad-drift-mode.hcl", "bad-drift-mode.hcl:2,16", `Invalid drift_mode; drift_mode "lenient" is neither "default" nor "strict"`, 1},
		{"duplicate-workspace.hcl", "duplicate-workspace.hcl:8,11", `Duplicate workspace; Workspace "sandbox" is already defined at testdata/config/duplicate-workspace.hcl:1,11-20`, 1},
		{"bad-workspace-name.hcl", "bad-workspace-name.hcl:1,11", `Invalid workspace name; workspace name "Sand Box": use lower-case letters`, 1},
		{"approvals-out-of-range.hcl", "approvals-out-of-range.hcl:2,24", `Invalid approvals_required; approvals_required is 11; it must be between 0 and 10`, 1},
		{"approvals-not-a-number.hcl", "approvals-not-a-number.hcl:2,25", `Unsuitable value type; Unsuitable value: a number is required`, 1},
		{"bad-action.hcl", "bad-action.hcl:2,23", `Invalid protected action; protected_actions: "destroy" is not one of create, update, delete, replace, read, forget`, 1},
		{"bad-env-name.hcl", "bad-env-name.hcl:5,11", `Invalid environment variable name; env: "sandbox-endpoint" is not an environment variable name`, 1},
		{"env-set-twice.hcl", "env-set-twice.hcl:5,22", `Environment variable set twice; env: SANDBOX_TOKEN_FILE is already set by token_file_env`, 1},
		{"missing-audience.hcl", "missing-audience.hcl:2,3", `Missing audience; token_file_env hands Terraform a minted token, and a token needs an audience`, 1},
		{"no-credential.hcl", "no-credential.hcl:2,3", `Invalid credentials; credential profile: neither a token nor static secrets`, 1},
		{"missing-credentials-block.hcl", "missing-credentials-block.hcl:1,21", `Missing credentials block; A credentials block is required`, 1},
		{"bad-issuer-url.hcl", "bad-issuer-url.hcl:1,14", `Invalid issuer_url; issuer_url: "ftp://127.0.0.1:8080" is not an http or https URL`, 1},
		{"bad-listen.hcl", "bad-listen.hcl:1,10", `Invalid listen address; listen: address 127.0.0.1: missing port in address`, 1},
		{"variable.hcl", "variable.hcl:1,12", `Variables not allowed`, 2},
		{"syntax-error.hcl", "syntax-error.hcl:3,15", `Unclosed configuration block`, 1},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".hcl"), func(t *testing.T) {
			path := filepath.Join("testdata", "config", tt.file)
			c, err := broker.ParseConfig(readConfigFile(t, path), path)
			if err == nil {
				t.Fatalf("ParseConfig = %+v, want an error", c)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, filepath.Join("testdata", "config", tt.at)+"-") {
				t.Errorf("error %q\nis not at %s", msg, tt.at)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q\ndoes not say %q", msg, tt.want)
			}
			var diags hcl.Diagnostics
			if !errors.As(err, &diags) || len(diags) != tt.count {
				t.Errorf("error is not %d hcl.Diagnostic(s): %v", tt.count, err)
			}
		})
	}
}

// TestParseConfigAllErrors checks that every problem is reported, in the
// order of the file.
func TestParseConfigAllErrors(t *testing.T) {
	src := `
clock_skew = "-1s"
workspace "sandbox" {
  approvals_required = -1
  drift_mode         = "lax"
  credentials {
    audience       = "sandbox"
    token_file_env = ["sandbox_token_file"]
    lifetime       = "1h"
  }
}
`
	_, err := broker.ParseConfig([]byte(src), "seb.hcl")
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) {
		t.Fatalf("ParseConfig = %v, want hcl.Diagnostics", err)
	}
	var got []string
	for _, d := range diags {
		got = append(got, d.Subject.String()+" "+d.Summary)
	}
	want := []string{
		"seb.hcl:2,14-19 Duration out of range",
		"seb.hcl:4,24-26 Invalid approvals_required",
		"seb.hcl:5,24-29 Invalid drift_mode",
		"seb.hcl:8,22-44 Invalid environment variable name",
		"seb.hcl:9,22-26 Duration out of range",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics\n got %q\nwant %q", got, want)
	}
}

// setLegacySecrets sets the environment full.hcl's static secrets name.
func setLegacySecrets(t *testing.T) {
	t.Setenv("LEGACY_TOKEN_RO", "read-only")
	t.Setenv("LEGACY_TOKEN_RW", "read-write")
}

// TestStaticSecrets: a static secret is read from where seb.hcl says it
// is, never written in it; a missing one refuses the configuration,
// naming it.
func TestStaticSecrets(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "apply.secret"), []byte("s3cret-apply\n"), 0o600)
	t.Setenv("SEB_TEST_PLAN_SECRET", "s3cret-plan")
	conf := func(plan, apply string) string {
		return "workspace \"w\" {\n  credentials {\n    plan_secrets = { T = \"" + plan + "\" }\n    apply_secrets = { T = \"" + apply + "\" }\n  }\n}\n"
	}
	c, err := broker.ParseConfig([]byte(conf("env:SEB_TEST_PLAN_SECRET", "file:apply.secret")), filepath.Join(dir, "seb.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Workspaces[0].Credentials; p.PlanSecrets["T"] != "s3cret-plan" || p.ApplySecrets["T"] != "s3cret-apply" {
		t.Errorf("secrets: %v, %v", p.PlanSecrets, p.ApplySecrets)
	}
	for _, tt := range []struct{ plan, apply, want string }{
		{"in-clear", "file:apply.secret", "plan_secrets: T: the secret is written in clear"},
		{"env:SEB_TEST_UNSET", "file:apply.secret", "the environment variable SEB_TEST_UNSET is not set"},
		{"env:SEB_TEST_PLAN_SECRET", "file:missing", "apply_secrets: T: open"},
	} {
		_, err := broker.ParseConfig([]byte(conf(tt.plan, tt.apply)), filepath.Join(dir, "seb.hcl"))
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s, %s: %v; want an error saying %q", tt.plan, tt.apply, err, tt.want)
		}
	}
}

// TestDatabaseConfig: the database block names a PostgreSQL URL and where
// its password is, never the password itself; it is not policy.
func TestDatabaseConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SEB_TEST_DB_PASSWORD", "s3cret-db")
	ws := "workspace \"w\" {\n  credentials {\n    audience = \"a\"\n    token_file_env = [\"T\"]\n  }\n}\n"
	parse := func(db string) (*broker.Config, error) {
		return broker.ParseConfig([]byte(db+ws), filepath.Join(dir, "seb.hcl"))
	}
	c, err := parse("database {\n  url = \"postgres://seb@db.internal:5432/seb?sslmode=verify-full\"\n  password = \"env:SEB_TEST_DB_PASSWORD\"\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.HA() || c.Database.URL != "postgres://seb@db.internal:5432/seb?sslmode=verify-full" || c.Database.Password != "s3cret-db" {
		t.Errorf("database: %+v", c.Database)
	}
	plain, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if plain.HA() || plain.Digest != c.Digest {
		t.Errorf("the database changed the policy digest or HA: %v %s %s", plain.HA(), plain.Digest, c.Digest)
	}
	for _, tt := range []struct{ db, want string }{
		{"database {\n  url = \"mysql://db/seb\"\n}\n", "write a PostgreSQL URL"},
		{"database {\n  url = \"postgres://seb:s3cret-db@db/seb\"\n}\n", "leave the password out of the URL"},
		{"database {\n  url = \"postgres://seb@db/seb?sslmode=verify-full\"\n  password = \"s3cret-db\"\n}\n", "database: password: the secret is written in clear"},
		{"database {\n  url = \"postgres://seb@db/seb?sslmode=verify-full\"\n  password = \"env:SEB_TEST_UNSET\"\n}\n", "SEB_TEST_UNSET is not set"},
		{"database {\n  url = \"postgres://seb@db/seb?sslmode=verify-full&password=s3cret-db\"\n}\n", "leave the password out of the URL"},
		{"database {\n  url = \"postgres://seb@db.internal/seb\"\n}\n", "add sslmode=verify-full"},
		{"database {\n  url = \"postgres://seb@db.internal/seb?sslmode=require\"\n}\n", "add sslmode=verify-full"},
	} {
		_, err := parse(tt.db)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: %v; want an error saying %q", tt.db, err, tt.want)
		}
	}
}

// TestDatabaseConfigLocal: a database on this machine (loopback or a
// socket) needs no TLS.
func TestDatabaseConfigLocal(t *testing.T) {
	ws := "workspace \"w\" {\n  credentials {\n    audience = \"a\"\n    token_file_env = [\"T\"]\n  }\n}\n"
	for _, u := range []string{"postgres://seb@127.0.0.1:5432/seb?sslmode=disable", "postgres://seb@localhost/seb", "postgres://seb@[::1]/seb",
		"postgres://seb@/seb?host=/run/postgresql"} {
		if _, err := broker.ParseConfig([]byte("database {\n  url = \""+u+"\"\n}\n"+ws), filepath.Join(t.TempDir(), "seb.hcl")); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestPolicyConfig: a workspace's policy and auto_certify_protected are
// read, and both are policy: each changes the configuration's digest.
func TestPolicyConfig(t *testing.T) {
	dir := t.TempDir()
	conf := func(extra string) string {
		return "workspace \"w\" {\n" + extra + "  credentials {\n    audience = \"a\"\n    token_file_env = [\"T\"]\n  }\n}\n"
	}
	parse := func(extra string) *broker.Config {
		t.Helper()
		c, err := broker.ParseConfig([]byte(conf(extra)), filepath.Join(dir, "seb.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	abs, err := filepath.Abs("../fixtures/policy")
	if err != nil {
		t.Fatal(err)
	}
	plain := parse("")
	withPolicy := parse("  policy = \"" + abs + "\"\n")
	protected := parse("  policy = \"" + abs + "\"\n  auto_certify_protected = true\n")
	if withPolicy.Workspaces[0].Policy == nil || !protected.Workspaces[0].AutoCertifyProtected || plain.Workspaces[0].AutoCertifyProtected {
		t.Errorf("policy %v, auto_certify_protected %t", withPolicy.Workspaces[0].Policy, protected.Workspaces[0].AutoCertifyProtected)
	}
	if plain.Digest == withPolicy.Digest || withPolicy.Digest == protected.Digest {
		t.Errorf("digests %s %s %s: a policy setting did not change it", plain.Digest, withPolicy.Digest, protected.Digest)
	}
	if _, err := broker.ParseConfig([]byte(conf("  policy = \"nowhere\"\n")), filepath.Join(dir, "seb.hcl")); err == nil || !strings.Contains(err.Error(), "Invalid policy") {
		t.Errorf("a policy that is not there: %v", err)
	}
}
