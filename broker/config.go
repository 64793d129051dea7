package broker

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/planparse"
	"github.com/seb-broker/seb/policy"
)

// Config is seb's configuration (seb.hcl): where it keeps its data, how it
// is reached, and its workspaces.
//
// In the file every top-level attribute is optional, and so is every
// workspace attribute but the credentials block. A workspace that leaves
// them out gets the safe defaults: drift_mode "default", 1h certificates,
// one approval, and delete and replace protected. An explicit
// protected_actions = [] protects nothing; approvals_required = 0 certifies
// automatically unless a protected action is in the diff.
type Config struct {
	// DataDir is where seb keeps its database, keys and state: default
	// ".seb". A relative path in the file is relative to the file's
	// directory: ParseConfig joins it to the directory of the file name it
	// is given, and LoadConfig makes it absolute.
	DataDir string
	// Terraform is an explicit Terraform or OpenTofu binary, relative paths
	// resolved like DataDir; "" means find one (drift.FindTerraform).
	Terraform string
	// IssuerURL is the broker's own URL as the issuer (iss) of the tokens
	// it mints, without a trailing slash: default "http://127.0.0.1:8080".
	IssuerURL string
	// Listen is the address the server listens on: default
	// "127.0.0.1:8080".
	Listen string
	// ClockSkew is the allowance for certificate validity checks: default
	// 30s, at most 5m.
	ClockSkew time.Duration
	// Workspaces are sorted by name, each name once.
	Workspaces []Workspace
	// Runner says who runs Terraform for this broker. It is how the
	// broker is operated, not what it admits: it is not in Digest.
	Runner RunnerConfig
	// Database, when set, is the PostgreSQL database several replicas
	// share (high availability); without it the store is a SQLite file in
	// DataDir. Not in Digest.
	Database DatabaseConfig
	// Digest is sha256:<hex> of what in the configuration is policy: the
	// RFC 8785 JSON, after defaults, of the issuer, the clock skew and each
	// workspace's rules (drift mode, certificate lifetime, approvals,
	// protected actions, hidden values) and credential profile's shape
	// (audience, token file variables, environment, token lifetime, and
	// the names of its static secrets — never their values), with sets
	// sorted. What only says how seb runs (listen address, data directory,
	// Terraform binary, runner) and secret values do not change it, nor do
	// whitespace, comments, order, or spelling a default or a duration
	// differently ("60m" for "1h"). It drives the policy epoch, and is
	// published in the audit log.
	Digest string
}

// DatabaseConfig is the database block of seb.hcl.
type DatabaseConfig struct {
	// URL is postgres://user@host:port/database?sslmode=…, without a
	// password.
	URL string
	// Password is read from where seb.hcl says ("env:VAR" or
	// "file:PATH"); "" when the URL's user needs none (or PGPASSFILE
	// gives it).
	Password string
}

// HA reports whether replicas share the store: a database is configured.
func (c *Config) HA() bool { return c.Database.URL != "" }

// RunnerConfig is the runner block of seb.hcl.
type RunnerConfig struct {
	// External turns off the runner `seb serve` starts as its child
	// process: the operator runs `seb runner` processes elsewhere.
	External bool
	// InsecureNoSandbox lets the embedded runner run Terraform without
	// bubblewrap, able to read whatever the runner's user can. Only for a
	// development machine without bubblewrap.
	InsecureNoSandbox bool
	// Lease is how long a runner's lease lasts without a heartbeat: how
	// soon a job whose runner died is ended. Default 30s.
	Lease time.Duration
}

// Bounds and defaults of the configuration.
const (
	configDefaultDataDir             = ".seb"
	configDefaultIssuerURL           = "http://127.0.0.1:8080"
	configDefaultListen              = "127.0.0.1:8080"
	configDefaultClockSkew           = 30 * time.Second
	configMaxClockSkew               = 5 * time.Minute
	configDefaultCertificateLifetime = time.Hour
	configMinCertificateLifetime     = time.Minute
	configMaxCertificateLifetime     = 24 * time.Hour
	configDefaultApprovals           = 1
	configMaxApprovals               = 10
)

// configEnvName is what an environment variable's name must look like.
var configEnvName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// LoadConfig reads the configuration file at path (see ParseConfig), and
// makes DataDir and Terraform absolute. A missing file is an error that
// wraps fs.ErrNotExist; the caller decides whether DefaultConfig applies.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	c, err := ParseConfig(src, path)
	if err != nil {
		return nil, err
	}
	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		return nil, fmt.Errorf("configuration %s: data_dir: %w", path, err)
	}
	if c.Terraform != "" {
		if c.Terraform, err = filepath.Abs(c.Terraform); err != nil {
			return nil, fmt.Errorf("configuration %s: terraform: %w", path, err)
		}
	}
	return c, nil
}

// ParseConfig parses and validates a configuration in HCL native syntax.
// filename names the source in diagnostics, and relative data_dir and
// terraform paths are resolved against its directory.
//
// Every problem is reported: the error is hcl.Diagnostics, sorted by
// position, each with its Subject range, so its text reads
// "seb.hcl:LINE,COL-COL: Summary; Detail" (and how many others there are).
// Unknown attributes and blocks are errors.
func ParseConfig(src []byte, filename string) (*Config, error) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, sortConfigDiags(diags)
	}
	var raw configFile
	if diags := gohcl.DecodeBody(file.Body, nil, &raw); diags.HasErrors() {
		return nil, sortConfigDiags(diags)
	}
	c, diags := raw.config(filepath.Dir(filename))
	if diags.HasErrors() {
		return nil, sortConfigDiags(diags)
	}
	c.Digest = digestConfig(c)
	dir := filepath.Dir(filename)
	if err := resolveSecrets(c, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	if !filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Join(dir, c.DataDir)
	}
	if c.Terraform != "" && !filepath.IsAbs(c.Terraform) {
		c.Terraform = filepath.Join(dir, c.Terraform)
	}
	return c, nil
}

// Static secrets are never written in clear in seb.hcl, where they would
// be read by whoever reads the configuration: each value names where the
// secret is, "env:VAR" (an environment variable of seb serve) or
// "file:PATH" (a file; a relative path is relative to seb.hcl's
// directory), and is read when the configuration is loaded.

// maxSecretFileBytes bounds a secret read from a file.
const maxSecretFileBytes = 64 << 10

// resolveSecrets replaces each static secret's reference with the secret.
func resolveSecrets(c *Config, dir string) error {
	var errs []error
	if c.Database.Password != "" {
		value, err := resolveSecret(c.Database.Password, dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("database: password: %w", err))
		}
		c.Database.Password = value
	}
	for i := range c.Workspaces {
		w := &c.Workspaces[i]
		for _, secrets := range []struct {
			attr string
			m    map[string]string
		}{{"plan_secrets", w.Credentials.PlanSecrets}, {"apply_secrets", w.Credentials.ApplySecrets}} {
			attr, m := secrets.attr, secrets.m
			for _, name := range slices.Sorted(maps.Keys(m)) {
				value, err := resolveSecret(m[name], dir)
				if err != nil {
					errs = append(errs, fmt.Errorf("workspace %s: %s: %s: %w", w.Name, attr, name, err))
					continue
				}
				m[name] = value
			}
		}
	}
	return errors.Join(errs...)
}

func resolveSecret(ref, dir string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		value, ok := os.LookupEnv(name)
		if !ok || value == "" {
			return "", fmt.Errorf("the environment variable %s is not set", name)
		}
		return value, nil
	case strings.HasPrefix(ref, "file:"):
		p := strings.TrimPrefix(ref, "file:")
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
		if err != nil {
			return "", err
		}
		if len(data) > maxSecretFileBytes {
			return "", fmt.Errorf("%s is larger than %d bytes", p, maxSecretFileBytes)
		}
		value := strings.TrimRight(string(data), "\r\n")
		if value == "" {
			return "", fmt.Errorf("%s is empty", p)
		}
		return value, nil
	}
	return "", errors.New(`the secret is written in clear; give where it is instead: "env:VAR" or "file:PATH"`)
}

// Workspace returns a copy of the workspace called name, and whether there
// is one.
func (c *Config) Workspace(name string) (Workspace, bool) {
	i := slices.IndexFunc(c.Workspaces, func(w Workspace) bool { return w.Name == name })
	if i < 0 {
		return Workspace{}, false
	}
	w := c.Workspaces[i]
	w.ProtectedActions = slices.Clone(w.ProtectedActions)
	p := &w.Credentials
	p.TokenFileEnv = slices.Clone(p.TokenFileEnv)
	p.Env, p.PlanSecrets, p.ApplySecrets = maps.Clone(p.Env), maps.Clone(p.PlanSecrets), maps.Clone(p.ApplySecrets)
	return w, true
}

// DefaultConfig returns the demo configuration `seb serve` uses in an empty
// directory: one workspace "sandbox" for the sandbox cloud at
// http://127.0.0.1:8081, whose tokens carry the audience "sandbox" and
// reach Terraform through SANDBOX_TOKEN_FILE, with SANDBOX_ENDPOINT set; one
// approval, delete and replace protected, the default drift mode and 1h
// certificates. DataDir is ".seb" in the working directory.
//
// It is exactly what fixtures/sandboxcloud/seb.hcl says: parsing that file
// as "seb.hcl" gives an equal Config, Digest included.
func DefaultConfig() *Config {
	c := &Config{
		DataDir:   configDefaultDataDir,
		IssuerURL: configDefaultIssuerURL,
		Listen:    configDefaultListen,
		ClockSkew: configDefaultClockSkew,
		Workspaces: []Workspace{{
			Name: "sandbox",
			Credentials: CredentialProfile{
				Audience:     "sandbox",
				TokenFileEnv: []string{"SANDBOX_TOKEN_FILE"},
				Env:          map[string]string{"SANDBOX_ENDPOINT": "http://127.0.0.1:8081"},
			},
			DriftMode:           drift.ModeDefault,
			CertificateLifetime: configDefaultCertificateLifetime,
			ApprovalsRequired:   configDefaultApprovals,
			ProtectedActions:    []planparse.Action{planparse.ActionDelete, planparse.ActionReplace},
		}},
	}
	c.Digest = digestConfig(c)
	return c
}

// configFile is seb.hcl as gohcl decodes it. Pointers tell a value left
// out (the default) from one given; the ranges locate values for the
// checks that follow decoding.
type configFile struct {
	DataDir        *string           `hcl:"data_dir,optional"`
	DataDirRange   hcl.Range         `hcl:"data_dir,attr_value_range"`
	Terraform      string            `hcl:"terraform,optional"`
	IssuerURL      *string           `hcl:"issuer_url,optional"`
	IssuerURLRange hcl.Range         `hcl:"issuer_url,attr_value_range"`
	Listen         *string           `hcl:"listen,optional"`
	ListenRange    hcl.Range         `hcl:"listen,attr_value_range"`
	ClockSkew      *string           `hcl:"clock_skew,optional"`
	ClockSkewRange hcl.Range         `hcl:"clock_skew,attr_value_range"`
	Workspaces     []configWorkspace `hcl:"workspace,block"`
	Runner         *configRunner     `hcl:"runner,block"`
	Database       *configDatabase   `hcl:"database,block"`
}

// localDatabase reports whether a database URL names this machine: a
// loopback address or a Unix socket, which need no TLS.
func localDatabase(u *url.URL) bool {
	host := u.Hostname()
	if h := u.Query().Get("host"); h != "" {
		host = h
	}
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// configDatabase is the database block.
type configDatabase struct {
	URL           string    `hcl:"url"`
	URLRange      hcl.Range `hcl:"url,attr_value_range"`
	Password      string    `hcl:"password,optional"`
	PasswordRange hcl.Range `hcl:"password,attr_value_range"`
}

// configRunner is the runner block.
type configRunner struct {
	External          bool      `hcl:"external,optional"`
	InsecureNoSandbox bool      `hcl:"insecure_no_sandbox,optional"`
	Lease             *string   `hcl:"lease,optional"`
	LeaseRange        hcl.Range `hcl:"lease,attr_value_range"`
}

// configWorkspace is one workspace block.
type configWorkspace struct {
	Name                     string            `hcl:"name,label"`
	NameRange                hcl.Range         `hcl:"name,label_range"`
	DriftMode                *string           `hcl:"drift_mode,optional"`
	DriftModeRange           hcl.Range         `hcl:"drift_mode,attr_value_range"`
	CertificateLifetime      *string           `hcl:"certificate_lifetime,optional"`
	CertificateLifetimeRange hcl.Range         `hcl:"certificate_lifetime,attr_value_range"`
	ApprovalsRequired        *int              `hcl:"approvals_required,optional"`
	ApprovalsRequiredRange   hcl.Range         `hcl:"approvals_required,attr_value_range"`
	ProtectedActions         *[]string         `hcl:"protected_actions,optional"`
	ProtectedActionsRange    hcl.Range         `hcl:"protected_actions,attr_value_range"`
	AllowHiddenValues        *bool             `hcl:"allow_hidden_values,optional"`
	Policy                   *string           `hcl:"policy,optional"`
	PolicyRange              hcl.Range         `hcl:"policy,attr_value_range"`
	AutoCertifyProtected     bool              `hcl:"auto_certify_protected,optional"`
	Credentials              configCredentials `hcl:"credentials,block"`
}

// configCredentials is a workspace's credentials block.
type configCredentials struct {
	DefRange          hcl.Range         `hcl:",def_range"`
	Audience          string            `hcl:"audience,optional"`
	AudienceRange     hcl.Range         `hcl:"audience,attr_value_range"`
	TokenFileEnv      []string          `hcl:"token_file_env,optional"`
	TokenFileEnvRange hcl.Range         `hcl:"token_file_env,attr_value_range"`
	Env               map[string]string `hcl:"env,optional"`
	EnvRange          hcl.Range         `hcl:"env,attr_value_range"`
	PlanSecrets       map[string]string `hcl:"plan_secrets,optional"`
	PlanSecretsRange  hcl.Range         `hcl:"plan_secrets,attr_value_range"`
	ApplySecrets      map[string]string `hcl:"apply_secrets,optional"`
	ApplySecretsRange hcl.Range         `hcl:"apply_secrets,attr_value_range"`
	Lifetime          string            `hcl:"lifetime,optional"`
	LifetimeRange     hcl.Range         `hcl:"lifetime,attr_value_range"`
}

// config checks the decoded file and returns the configuration it says,
// defaults applied, paths as written and no digest yet.
// config checks the decoded file; dir is the file's directory, against
// which policy paths are resolved.
func (f *configFile) config(dir string) (*Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	c := &Config{
		DataDir:   configDefaultDataDir,
		IssuerURL: configDefaultIssuerURL,
		Listen:    configDefaultListen,
		ClockSkew: configDefaultClockSkew,
	}
	if f.Terraform != "" {
		c.Terraform = filepath.Clean(f.Terraform)
	}
	if f.DataDir != nil {
		if *f.DataDir == "" {
			diags = diags.Append(configDiag(f.DataDirRange, "Invalid data_dir",
				`data_dir is empty; leave it out for the default ".seb".`))
		} else {
			c.DataDir = filepath.Clean(*f.DataDir)
		}
	}
	if f.IssuerURL != nil {
		c.IssuerURL = strings.TrimSuffix(*f.IssuerURL, "/")
		if err := validIssuerURL(*f.IssuerURL); err != nil {
			diags = diags.Append(configDiag(f.IssuerURLRange, "Invalid issuer_url",
				fmt.Sprintf("issuer_url: %v.", err)))
		}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
		if err := validConfigListen(c.Listen); err != nil {
			diags = diags.Append(configDiag(f.ListenRange, "Invalid listen address",
				fmt.Sprintf("listen: %v; write host:port, e.g. %q.", err, configDefaultListen)))
		}
	}
	if f.ClockSkew != nil {
		var ddiags hcl.Diagnostics
		c.ClockSkew, ddiags = parseConfigDuration("clock_skew", *f.ClockSkew, f.ClockSkewRange, 0, configMaxClockSkew)
		diags = append(diags, ddiags...)
	}
	if f.Database != nil {
		c.Database = DatabaseConfig{URL: f.Database.URL, Password: f.Database.Password}
		u, err := url.Parse(f.Database.URL)
		switch {
		case err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || (u.Host == "" && !u.Query().Has("host")):
			diags = diags.Append(configDiag(f.Database.URLRange, "Invalid database url",
				`database url: write a PostgreSQL URL, e.g. "postgres://seb@db.internal:5432/seb?sslmode=verify-full".`))
		case u.User != nil && func() bool { _, set := u.User.Password(); return set }(),
			u.Query().Has("password"), u.Query().Has("sslpassword"):
			diags = diags.Append(configDiag(f.Database.URLRange, "Password in the database url",
				`database url: leave the password out of the URL; give where it is with password = "env:VAR" or "file:PATH".`))
		case !localDatabase(u) && u.Query().Get("sslmode") != "verify-full" && u.Query().Get("sslmode") != "verify-ca":
			diags = diags.Append(configDiag(f.Database.URLRange, "Database connection not verified",
				`database url: a database on another host is reached over TLS with its certificate checked: add sslmode=verify-full (or verify-ca) to the URL; anyone on the path could otherwise rewrite seb's records.`))
		}
	}
	if f.Runner != nil {
		c.Runner = RunnerConfig{External: f.Runner.External, InsecureNoSandbox: f.Runner.InsecureNoSandbox}
		if f.Runner.Lease != nil {
			var ddiags hcl.Diagnostics
			c.Runner.Lease, ddiags = parseConfigDuration("lease", *f.Runner.Lease, f.Runner.LeaseRange, 3*time.Second, 10*time.Minute)
			diags = append(diags, ddiags...)
		}
	}
	seen := map[string]hcl.Range{}
	for _, raw := range f.Workspaces {
		w, wdiags := raw.workspace(dir)
		diags = append(diags, wdiags...)
		if first, ok := seen[w.Name]; ok {
			diags = diags.Append(configDiag(raw.NameRange, "Duplicate workspace",
				fmt.Sprintf("Workspace %q is already defined at %s.", w.Name, first)))
			continue
		}
		seen[w.Name] = raw.NameRange
		c.Workspaces = append(c.Workspaces, w)
	}
	slices.SortFunc(c.Workspaces, func(a, b Workspace) int { return strings.Compare(a.Name, b.Name) })
	return c, diags
}

// workspace checks a workspace block and returns the workspace it says.
func (raw *configWorkspace) workspace(dir string) (Workspace, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	w := Workspace{
		Name:                raw.Name,
		DriftMode:           drift.ModeDefault,
		CertificateLifetime: configDefaultCertificateLifetime,
		ApprovalsRequired:   configDefaultApprovals,
		ProtectedActions:    []planparse.Action{planparse.ActionDelete, planparse.ActionReplace},
	}
	if err := drift.ValidWorkspace(raw.Name); err != nil {
		diags = diags.Append(configDiag(raw.NameRange, "Invalid workspace name", err.Error()+"."))
	}
	if raw.DriftMode != nil {
		w.DriftMode = drift.Mode(*raw.DriftMode)
		if w.DriftMode != drift.ModeDefault && w.DriftMode != drift.ModeStrict {
			diags = diags.Append(configDiag(raw.DriftModeRange, "Invalid drift_mode",
				fmt.Sprintf("drift_mode %q is neither %q nor %q.", *raw.DriftMode, drift.ModeDefault, drift.ModeStrict)))
		}
	}
	if raw.CertificateLifetime != nil {
		var ddiags hcl.Diagnostics
		w.CertificateLifetime, ddiags = parseConfigDuration("certificate_lifetime", *raw.CertificateLifetime,
			raw.CertificateLifetimeRange, configMinCertificateLifetime, configMaxCertificateLifetime)
		diags = append(diags, ddiags...)
	}
	if raw.AllowHiddenValues != nil {
		w.AllowHiddenValues = *raw.AllowHiddenValues
	}
	w.AutoCertifyProtected = raw.AutoCertifyProtected
	if raw.Policy != nil {
		path := *raw.Policy
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		set, err := policy.Load(path)
		if err != nil {
			diags = diags.Append(configDiag(raw.PolicyRange, "Invalid policy", fmt.Sprintf("workspace %s: %v.", raw.Name, err)))
		}
		w.Policy = set
	}
	if raw.ApprovalsRequired != nil {
		w.ApprovalsRequired = *raw.ApprovalsRequired
		if w.ApprovalsRequired < 0 || w.ApprovalsRequired > configMaxApprovals {
			diags = diags.Append(configDiag(raw.ApprovalsRequiredRange, "Invalid approvals_required",
				fmt.Sprintf("approvals_required is %d; it must be between 0 and %d.", w.ApprovalsRequired, configMaxApprovals)))
		}
	}
	if raw.ProtectedActions != nil {
		w.ProtectedActions = nil
		for _, a := range *raw.ProtectedActions {
			switch action := planparse.Action(a); action {
			case planparse.ActionCreate, planparse.ActionUpdate, planparse.ActionDelete,
				planparse.ActionReplace, planparse.ActionRead, planparse.ActionForget:
				w.ProtectedActions = append(w.ProtectedActions, action)
			default:
				diags = diags.Append(configDiag(raw.ProtectedActionsRange, "Invalid protected action",
					fmt.Sprintf("protected_actions: %q is not one of create, update, delete, replace, read, forget.", a)))
			}
		}
		slices.Sort(w.ProtectedActions)
		w.ProtectedActions = slices.Compact(w.ProtectedActions)
	}
	var cdiags hcl.Diagnostics
	w.Credentials, cdiags = raw.Credentials.profile()
	return w, append(diags, cdiags...)
}

// profile checks a credentials block and returns the profile it says.
// Token file variables are a set, sorted; empty maps become nil.
func (raw *configCredentials) profile() (CredentialProfile, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	p := CredentialProfile{Audience: raw.Audience}
	if len(raw.TokenFileEnv) > 0 {
		p.TokenFileEnv = slices.Compact(slices.Sorted(slices.Values(raw.TokenFileEnv)))
	}
	if len(raw.Env) > 0 {
		p.Env = raw.Env
	}
	if len(raw.PlanSecrets) > 0 {
		p.PlanSecrets = raw.PlanSecrets
	}
	if len(raw.ApplySecrets) > 0 {
		p.ApplySecrets = raw.ApplySecrets
	}
	if p.Audience != "" {
		if err := validText("audience", p.Audience, maxAudienceBytes); err != nil {
			diags = diags.Append(configDiag(raw.AudienceRange, "Invalid audience", err.Error()+"."))
		}
	}
	if raw.Lifetime != "" {
		var ddiags hcl.Diagnostics
		p.Lifetime, ddiags = parseConfigDuration("lifetime", raw.Lifetime, raw.LifetimeRange,
			MinCredentialLifetime, MaxCredentialLifetime)
		diags = append(diags, ddiags...)
	}

	// Each variable comes from one place only: a token file variable, env,
	// or the secrets (the same name may hold a plan and an apply secret).
	setBy := map[string]string{}
	claim := func(attr string, rng hcl.Range, names []string) {
		for _, name := range names {
			prev, taken := setBy[name]
			switch {
			case !configEnvName.MatchString(name):
				diags = diags.Append(configDiag(rng, "Invalid environment variable name",
					fmt.Sprintf("%s: %q is not an environment variable name (upper-case letters, digits and _, not starting with a digit).", attr, name)))
			case taken && !(prev == "plan_secrets" && attr == "apply_secrets"):
				diags = diags.Append(configDiag(rng, "Environment variable set twice",
					fmt.Sprintf("%s: %s is already set by %s; each variable comes from one place.", attr, name, prev)))
			default:
				setBy[name] = attr
			}
		}
	}
	claim("token_file_env", raw.TokenFileEnvRange, p.TokenFileEnv)
	claim("env", raw.EnvRange, slices.Sorted(maps.Keys(raw.Env)))
	claim("plan_secrets", raw.PlanSecretsRange, slices.Sorted(maps.Keys(raw.PlanSecrets)))
	claim("apply_secrets", raw.ApplySecretsRange, slices.Sorted(maps.Keys(raw.ApplySecrets)))

	// The profile's own rules last, and only for a block that is otherwise
	// right, so that one mistake gives one diagnostic.
	switch {
	case len(p.TokenFileEnv) > 0 && p.Audience == "":
		diags = diags.Append(configDiag(raw.DefRange, "Missing audience",
			"token_file_env hands Terraform a minted token, and a token needs an audience: set audience to what the target API requires."))
	case !diags.HasErrors():
		if err := p.Valid(); err != nil {
			diags = diags.Append(configDiag(raw.DefRange, "Invalid credentials",
				err.Error()+"; set token_file_env (and audience) for a minted token, or plan_secrets and apply_secrets."))
		}
	}
	return p, diags
}

// validConfigListen checks a host:port address; the host may be empty
// (all interfaces), the port must be a number.
func validConfigListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// parseConfigDuration parses the value s of attribute attr, found at rng,
// which must be between lo and hi.
func parseConfigDuration(attr, s string, rng hcl.Range, lo, hi time.Duration) (time.Duration, hcl.Diagnostics) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, hcl.Diagnostics{configDiag(rng, "Invalid duration",
			fmt.Sprintf("%s: %q is not a duration such as \"90s\", \"5m\" or \"1h\".", attr, s))}
	}
	if d < lo || d > hi {
		return d, hcl.Diagnostics{configDiag(rng, "Duration out of range",
			fmt.Sprintf("%s: %s is outside %s..%s.", attr, d, lo, hi))}
	}
	return d, nil
}

// configDiag returns an error diagnostic about the source at subject.
func configDiag(subject hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: subject.Ptr()}
}

// sortConfigDiags sorts diagnostics by position, so that the first one
// reported is the first in the file, whatever order they were found in.
func sortConfigDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		var ra, rb hcl.Range
		if a.Subject != nil {
			ra = *a.Subject
		}
		if b.Subject != nil {
			rb = *b.Subject
		}
		return cmp.Or(strings.Compare(ra.Filename, rb.Filename), cmp.Compare(ra.Start.Byte, rb.Start.Byte))
	})
	return diags
}

// digestConfig returns sha256:<hex> of c's canonical content: the RFC 8785
// JSON of its values, sets sorted and absent collections empty, so that
// only a change of meaning changes it.
func digestConfig(c *Config) string {
	type credentials struct {
		Audience     string            `json:"audience"`
		TokenFileEnv []string          `json:"token_file_env"`
		Env          map[string]string `json:"env"`
		PlanSecrets  []string          `json:"plan_secret_names"`
		ApplySecrets []string          `json:"apply_secret_names"`
		Lifetime     int64             `json:"lifetime_ns"`
	}
	type workspace struct {
		Name                string   `json:"name"`
		DriftMode           string   `json:"drift_mode"`
		CertificateLifetime int64    `json:"certificate_lifetime_ns"`
		ApprovalsRequired   int      `json:"approvals_required"`
		ProtectedActions    []string `json:"protected_actions"`
		// Only when set, so that digests from before them stay the same.
		AllowHiddenValues    bool        `json:"allow_hidden_values,omitempty"`
		Policy               string      `json:"policy_digest,omitempty"`
		AutoCertifyProtected bool        `json:"auto_certify_protected,omitempty"`
		Credentials          credentials `json:"credentials"`
	}
	type config struct {
		IssuerURL  string      `json:"issuer_url"`
		ClockSkew  int64       `json:"clock_skew_ns"`
		Workspaces []workspace `json:"workspaces"`
	}
	set := func(s []string) []string { return slices.Compact(slices.Sorted(slices.Values(s))) }
	object := func(m map[string]string) map[string]string {
		if m == nil {
			return map[string]string{}
		}
		return m
	}
	doc := config{
		IssuerURL:  c.IssuerURL,
		ClockSkew:  int64(c.ClockSkew),
		Workspaces: []workspace{},
	}
	names := func(m map[string]string) []string { return append([]string{}, slices.Sorted(maps.Keys(m))...) }
	for _, w := range c.Workspaces {
		actions := make([]string, len(w.ProtectedActions))
		for i, a := range w.ProtectedActions {
			actions[i] = string(a)
		}
		p := w.Credentials
		doc.Workspaces = append(doc.Workspaces, workspace{
			Name:                 w.Name,
			DriftMode:            string(w.DriftMode),
			CertificateLifetime:  int64(w.CertificateLifetime),
			ApprovalsRequired:    w.ApprovalsRequired,
			ProtectedActions:     append([]string{}, set(actions)...),
			AllowHiddenValues:    w.AllowHiddenValues,
			Policy:               w.Policy.DigestOrEmpty(),
			AutoCertifyProtected: w.AutoCertifyProtected,
			Credentials: credentials{
				Audience:     p.Audience,
				TokenFileEnv: append([]string{}, set(p.TokenFileEnv)...),
				Env:          object(p.Env),
				PlanSecrets:  names(p.PlanSecrets),
				ApplySecrets: names(p.ApplySecrets),
				Lifetime:     int64(p.Lifetime),
			},
		})
	}
	slices.SortFunc(doc.Workspaces, func(a, b workspace) int { return strings.Compare(a.Name, b.Name) })
	data, err := json.Marshal(doc)
	if err == nil {
		data, err = jcs.Transform(data)
	}
	if err != nil {
		// Strings, integers and maps of strings always encode.
		panic("config digest: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
