package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/drift"
)

func TestRunCredentials(t *testing.T) {
	c := newClock()
	iss := newIssuer(t, c, broker.IssuerOptions{})
	creds := broker.RunCredentials{
		Issuer: iss,
		Profile: broker.CredentialProfile{
			Audience:     "sts.amazonaws.com",
			TokenFileEnv: []string{"AWS_WEB_IDENTITY_TOKEN_FILE"},
			Env: map[string]string{
				"AWS_ROLE_ARN":          "arn:aws:iam::123456789012:role/seb-{workspace}-{phase}",
				"AWS_ROLE_SESSION_NAME": "seb-{execution}",
			},
			PlanSecrets:  map[string]string{"READ_ONLY_KEY": "r"},
			ApplySecrets: map[string]string{"WRITE_KEY": "w"},
		},
		Workspace: "prod", ExecutionID: "exec-7", CertificateID: "cert-7",
	}
	dir := t.TempDir()
	for _, phase := range []drift.Phase{drift.PhasePlan, drift.PhaseApply} {
		env, err := creds.Env(context.Background(), phase, dir)
		if err != nil {
			t.Fatal(err)
		}
		path := env["AWS_WEB_IDENTITY_TOKEN_FILE"]
		if path != filepath.Join(dir, string(phase)+".token") {
			t.Errorf("%s: token file %q", phase, path)
		}
		info, err := os.Stat(path)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: token file: %v, %v", phase, info, err)
		}
		token, _ := os.ReadFile(path)
		claims := decodeSegment(t, string(token), 1)
		if claims["phase"] != string(phase) || claims["sub"] != "workspace:prod:phase:"+string(phase) || claims["aud"].([]any)[0] != "sts.amazonaws.com" {
			t.Errorf("%s: claims %v", phase, claims)
		}
		if env["AWS_ROLE_ARN"] != "arn:aws:iam::123456789012:role/seb-prod-"+string(phase) || env["AWS_ROLE_SESSION_NAME"] != "seb-exec-7" {
			t.Errorf("%s: env %v", phase, env)
		}
		for k, v := range env {
			if strings.Contains(v, string(token)) {
				t.Errorf("%s: the token itself is in %s", phase, k)
			}
		}
		_, planSecret := env["READ_ONLY_KEY"]
		_, applySecret := env["WRITE_KEY"]
		if planSecret != (phase == drift.PhasePlan) || applySecret != (phase == drift.PhaseApply) {
			t.Errorf("%s: secrets of the wrong phase: %v", phase, env)
		}
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("token directory mode %v", info.Mode().Perm())
	}
}

func TestCredentialProfileValid(t *testing.T) {
	for name, p := range map[string]broker.CredentialProfile{
		"token without audience": {TokenFileEnv: []string{"X"}},
		"nothing at all":         {Audience: "a"},
	} {
		if err := p.Valid(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	static := broker.CredentialProfile{ApplySecrets: map[string]string{"K": "v"}}
	env, err := broker.RunCredentials{Profile: static, Workspace: "prod"}.Env(context.Background(), drift.PhaseApply, t.TempDir())
	if err != nil || env["K"] != "v" {
		t.Errorf("static secrets: %v, %v", env, err)
	}
}
