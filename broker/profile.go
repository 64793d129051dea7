package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/seb-broker/seb/drift"
)

// A CredentialProfile says how a workspace's credential reaches Terraform.
// The usual way: seb mints a token for the phase, writes it to a file in
// the workdir (0600), and sets the variables that name the file — for the
// sandbox SANDBOX_TOKEN_FILE, for AWS AWS_WEB_IDENTITY_TOKEN_FILE with
// AWS_ROLE_ARN and AWS_ROLE_SESSION_NAME in Env. For systems without OIDC
// the broker can instead hold static secrets per phase.
type CredentialProfile struct {
	// Audience is the audience of minted tokens: what the target API
	// requires (sandbox; sts.amazonaws.com; a Vault role's bound audience).
	Audience string
	// TokenFileEnv names the variables set to the token file's path. Empty
	// means no token is minted (static secrets only).
	TokenFileEnv []string
	// Env is set as given, after replacing {workspace}, {phase},
	// {execution} and {certificate}: e.g. AWS_ROLE_SESSION_NAME =
	// "seb-{execution}".
	Env map[string]string
	// PlanSecrets and ApplySecrets are static secrets set only in their
	// phase.
	PlanSecrets, ApplySecrets map[string]string
	// Lifetime of minted tokens; 0 means the issuer's default.
	Lifetime time.Duration
}

// Valid reports whether the profile can be used.
func (p CredentialProfile) Valid() error {
	if len(p.TokenFileEnv) > 0 && p.Audience == "" {
		return errors.New("credential profile: a token needs an audience")
	}
	if len(p.TokenFileEnv) == 0 && len(p.PlanSecrets) == 0 && len(p.ApplySecrets) == 0 {
		return errors.New("credential profile: neither a token nor static secrets")
	}
	return nil
}

// RunCredentials mint a run's credentials: one per phase, each when the
// phase starts, scoped to the workspace, the execution and its
// certificate. They implement drift.Credentials.
type RunCredentials struct {
	Issuer        *Issuer
	Profile       CredentialProfile
	Workspace     string
	ExecutionID   string
	CertificateID string
}

var _ drift.Credentials = RunCredentials{}

// Env mints the phase's credential, writes it to a file in dir (the run's
// secrets directory) that only the broker's user can read, and returns the environment that hands it to
// Terraform. The token itself never appears in the environment or in logs.
func (c RunCredentials) Env(ctx context.Context, phase drift.Phase, dir string) (map[string]string, error) {
	g, err := c.Grant(phase)
	if err != nil {
		return nil, err
	}
	return g.Environment(dir)
}

// Grant mints the phase's credential and returns it with how it reaches
// Terraform, for a runner to hand over.
func (c RunCredentials) Grant(phase drift.Phase) (*Grant, error) {
	if err := c.Profile.Valid(); err != nil {
		return nil, err
	}
	replacer := strings.NewReplacer("{workspace}", c.Workspace, "{phase}", string(phase),
		"{execution}", c.ExecutionID, "{certificate}", c.CertificateID)
	g := &Grant{Phase: phase, Env: map[string]string{}, TokenFileEnv: c.Profile.TokenFileEnv}
	for k, v := range c.Profile.Env {
		g.Env[k] = replacer.Replace(v)
	}
	secrets := c.Profile.PlanSecrets
	if phase == drift.PhaseApply {
		secrets = c.Profile.ApplySecrets
	}
	for k, v := range secrets {
		g.Env[k] = v
	}
	if len(c.Profile.TokenFileEnv) == 0 {
		return g, nil
	}
	cred, err := c.Issuer.MintCredential(CredentialRequest{
		Workspace:     c.Workspace,
		Audience:      c.Profile.Audience,
		Phase:         Phase(phase),
		ExecutionID:   c.ExecutionID,
		CertificateID: c.CertificateID,
		Lifetime:      c.Profile.Lifetime,
	})
	if err != nil {
		return nil, err
	}
	g.Token, g.TokenID, g.ExpiresAt = cred.Token, cred.Claims.ID, cred.ExpiresAt
	return g, nil
}

// A Grant is one phase's credential as a runner receives it: the
// environment Terraform gets, and a token to write to a file whose path
// the TokenFileEnv variables name.
type Grant struct {
	Phase        drift.Phase       `json:"phase"`
	Env          map[string]string `json:"env"`
	Token        string            `json:"token,omitempty"`
	TokenID      string            `json:"token_id,omitempty"`
	TokenFileEnv []string          `json:"token_file_env,omitempty"`
	ExpiresAt    time.Time         `json:"expires_at,omitzero"`
}

// Environment writes the grant's token to a file in dir (0600 in a 0700
// directory) and returns the environment that hands it to Terraform.
func (g *Grant) Environment(dir string) (map[string]string, error) {
	env := maps.Clone(g.Env)
	if env == nil {
		env = map[string]string{}
	}
	if len(g.TokenFileEnv) == 0 {
		return env, nil
	}
	path, err := writeTokenFile(dir, string(g.Phase), g.Token)
	if err != nil {
		return nil, err
	}
	for _, name := range g.TokenFileEnv {
		env[name] = path
	}
	return env, nil
}

// GrantCredentials hand a runner's engine the credentials the broker
// granted: a phase the broker did not grant is refused.
type GrantCredentials struct{ Plan, Apply *Grant }

var _ drift.Credentials = GrantCredentials{}

// Env implements drift.Credentials.
func (c GrantCredentials) Env(_ context.Context, phase drift.Phase, dir string) (map[string]string, error) {
	g := c.Plan
	if phase == drift.PhaseApply {
		g = c.Apply
	}
	if g == nil || g.Phase != phase {
		return nil, fmt.Errorf("the broker granted no %s-phase credential", phase)
	}
	return g.Environment(dir)
}

// writeTokenFile writes token to <dir>/<phase>.token, 0600 in a 0700
// directory, replacing an earlier one atomically.
func writeTokenFile(dir, phase, token string) (string, error) {
	tokenDir := dir
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if err := os.Chmod(tokenDir, 0o700); err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tmp, err := os.CreateTemp(tokenDir, ".token-*")
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(token)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(tokenDir, phase+".token")
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return path, nil
}
