package broker

import (
	"context"
	"errors"
	"fmt"
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
	if err := c.Profile.Valid(); err != nil {
		return nil, err
	}
	replacer := strings.NewReplacer("{workspace}", c.Workspace, "{phase}", string(phase),
		"{execution}", c.ExecutionID, "{certificate}", c.CertificateID)
	env := map[string]string{}
	for k, v := range c.Profile.Env {
		env[k] = replacer.Replace(v)
	}
	secrets := c.Profile.PlanSecrets
	if phase == drift.PhaseApply {
		secrets = c.Profile.ApplySecrets
	}
	for k, v := range secrets {
		env[k] = v
	}
	if len(c.Profile.TokenFileEnv) == 0 {
		return env, nil
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
	path, err := writeTokenFile(dir, string(phase), cred.Token)
	if err != nil {
		return nil, err
	}
	for _, name := range c.Profile.TokenFileEnv {
		env[name] = path
	}
	return env, nil
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
