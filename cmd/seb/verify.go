package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/broker"
)

// errNotVerified makes `seb verify` exit with exitDiverged: the file is
// not what seb signed.
var errNotVerified = errors.New("the envelope does not verify")

// maxEnvelopeBytes bounds the envelope seb verify reads.
const maxEnvelopeBytes = 1 << 30

func newVerifyCommand() *cobra.Command {
	var (
		publicKey, server string
		payload           bool
	)
	cmd := &cobra.Command{
		Use:   "verify (--public-key FILE | --server URL) ENVELOPE",
		Short: "Check a certificate, log or plan seb signed, offline",
		Long: `Verify checks a DSSE envelope seb signed — a certificate, or an execution's
plan log, apply log or plan JSON (GET /api/v1/artifacts/{id}) — with only
seb's public key: from a PEM file (--public-key), or fetched from a seb
server (--server, from /api/v1/keys/signing). It prints what the envelope
holds and its digest; with --payload it writes the verified payload
itself to standard output, and nothing else.

Exit status: 0 the envelope verifies, 1 it does not, 2 an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := signingKey(publicKey, server)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			envelope, err := io.ReadAll(io.LimitReader(f, maxEnvelopeBytes+1))
			if err != nil {
				return err
			}
			if len(envelope) > maxEnvelopeBytes {
				return fmt.Errorf("%s is larger than %d bytes", args[0], maxEnvelopeBytes)
			}
			out := cmd.OutOrStdout()
			var head struct {
				PayloadType string `json:"payloadType"`
			}
			if err := json.Unmarshal(envelope, &head); err != nil {
				fmt.Fprintf(out, "FAILED: %s is not a DSSE envelope\n", args[0])
				return errNotVerified
			}
			if head.PayloadType == broker.CertificatePayloadType {
				c, err := broker.VerifyCertificate(envelope, keys...)
				if err != nil {
					fmt.Fprintf(out, "FAILED: %s\n", broker.ErrorMessage(err))
					return errNotVerified
				}
				if payload {
					return json.NewEncoder(out).Encode(c)
				}
				fmt.Fprintf(out, "OK: certificate %s for workspace %s, signed by %s\n  diff %s\n  configuration %s\n  valid %s to %s\n",
					c.ID, c.Workspace, c.IssuerKeyID, c.DiffDigest, c.ConfigDigest,
					c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
				return nil
			}
			a, err := broker.VerifyArtifactEnvelope(envelope, keys...)
			if err != nil {
				fmt.Fprintf(out, "FAILED: %s\n", broker.ErrorMessage(err))
				return errNotVerified
			}
			if payload {
				_, err := out.Write(a.Data)
				return err
			}
			fmt.Fprintf(out, "OK: %s of %d bytes, %s, signed by %s\n", a.Kind, len(a.Data), a.Digest, a.KeyID)
			return nil
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "PEM file of seb's public signing key")
	cmd.Flags().StringVar(&server, "server", "", "a seb server to fetch the public signing key from")
	cmd.Flags().BoolVar(&payload, "payload", false, "write the verified payload to standard output")
	return cmd
}

// signingKey reads seb's public signing keys (current and retired) from a
// PEM file, or fetches them from a server's /api/v1/keys/signing.
func signingKey(file, server string) ([]ed25519.PublicKey, error) {
	var (
		pemBytes []byte
		err      error
	)
	switch {
	case file != "" && server != "":
		return nil, errors.New("give --public-key or --server, not both")
	case file != "":
		pemBytes, err = os.ReadFile(file)
	case server != "":
		pemBytes, err = fetchSigningKey(server)
	default:
		return nil, errors.New("--public-key or --server is required: seb's public signing key (a PEM file, or the server to fetch it from)")
	}
	if err != nil {
		return nil, err
	}
	keys, err := broker.ParsePublicKeysPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("the public key: %v", broker.ErrorMessage(err))
	}
	return keys, nil
}

func fetchSigningKey(server string) ([]byte, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(strings.TrimSuffix(server, "/") + "/api/v1/keys/signing")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: the signing key: %s", server, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<16))
}
