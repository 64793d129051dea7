package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/broker"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Make, list and rotate seb's keys (on this machine's data directory)"}
	var configPath string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the signer's keys (certificates, logs, audit) and the token issuer's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadOperatorConfig(cmd, configPath)
			if err != nil {
				return err
			}
			signer, err := broker.OpenSigner(filepath.Join(cfg.DataDir, "signer"))
			if err != nil {
				return err
			}
			issuer, err := broker.OpenKeySet(filepath.Join(cfg.DataDir, "keys"), broker.KeySetOptions{})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USE\tKEY\tSTATE")
			for i, k := range signer.PublicKeys() {
				state := "current: signs"
				if i > 0 {
					state = "retired: verifies what it signed"
				}
				fmt.Fprintf(w, "signer\t%s\t%s\n", broker.PublicKeyID(k), state)
			}
			for _, k := range issuer.Keys() {
				state := "current: mints tokens"
				if !k.RetiredAt.IsZero() {
					state = "retired " + k.RetiredAt.Format(time.RFC3339) + ": published until its tokens expire"
				}
				fmt.Fprintf(w, "issuer\t%s\t%s\n", k.ID, state)
			}
			return w.Flush()
		},
	}
	var signer, issuer bool
	rotate := &cobra.Command{
		Use:   "rotate --signer | --issuer",
		Short: "Replace the signer's or the issuer's key (audited); restart seb serve to use it",
		Long: `Rotate replaces a key with a new one and records it in the audit log.

--signer: the new key signs certificates, logs, checkpoints and the audit
log from then on; the old key's public half stays published
(/api/v1/keys/signing), so what it signed keeps verifying; its private half
is destroyed.

--issuer: the new key mints the scoped tokens sandboxes and clouds trust;
the old one stays published in the JWKS until the tokens it minted expire.

A running seb serve keeps the keys it loaded: restart it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if signer == issuer {
				return errors.New("give --signer or --issuer")
			}
			cfg, err := loadOperatorConfig(cmd, configPath)
			if err != nil {
				return err
			}
			store, err := openStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			dir := filepath.Join(cfg.DataDir, "signer")
			var (
				what, oldID, newID string
				sealer             *broker.Signer
			)
			if signer {
				what = "signer"
				if sealer, oldID, err = broker.RotateSigner(dir); err != nil {
					return err
				}
				newID = sealer.KeyID()
			} else {
				what = "issuer"
				ks, err := broker.OpenKeySet(filepath.Join(cfg.DataDir, "keys"), broker.KeySetOptions{})
				if err != nil {
					return err
				}
				oldID = currentKey(ks)
				if err := ks.Rotate(time.Now()); err != nil {
					return err
				}
				newID = currentKey(ks)
				if sealer, err = broker.OpenSigner(dir); err != nil {
					return err
				}
			}
			details, _ := json.Marshal(map[string]string{"old_key": oldID, "new_key": newID})
			entry := broker.AuditEntry{Time: time.Now(), Actor: localActor(), Action: "keys.rotated", Subject: what, Details: details}
			if _, err := store.AppendAudit(cmd.Context(), func(last *broker.AuditEntry) (*broker.AuditEntry, error) {
				return sealer.SealAudit(last, entry)
			}); err != nil {
				return fmt.Errorf("the %s key was rotated (%s → %s) but the audit entry could not be written: %w", what, oldID, newID, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated the %s key: %s → %s\n", what, oldID, newID)
			fmt.Fprintln(cmd.ErrOrStderr(), "seb: restart seb serve to use the new key")
			return nil
		},
	}
	rotate.Flags().BoolVar(&signer, "signer", false, "rotate the key that signs certificates, logs and the audit log")
	rotate.Flags().BoolVar(&issuer, "issuer", false, "rotate the key that mints scoped tokens")
	initKeys := &cobra.Command{
		Use:   "init",
		Short: "Make the keys replicas share, once, in the data directory",
		Long: `Init makes the keys every seb replica must share, in the configuration's data
directory: the signer's (keys/ is the token issuer's, signer/ the signer's)
and sensitive.key, the key of sensitive values' digests. Keys already there
are kept. With a shared database (the database block of seb.hcl), seb serve
never makes keys: copy these three to each replica's data directory,
readable by seb alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configPath)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return err
			}
			if _, err := broker.OpenKeySet(filepath.Join(cfg.DataDir, "keys"), broker.KeySetOptions{}); err != nil {
				return err
			}
			if _, err := broker.OpenSigner(filepath.Join(cfg.DataDir, "signer")); err != nil {
				return err
			}
			if _, err := dataKey(filepath.Join(cfg.DataDir, "sensitive.key")); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "keys in %s: ", cfg.DataDir)
			for i, name := range keyFiles {
				if i > 0 {
					fmt.Fprint(cmd.OutOrStdout(), ", ")
				}
				fmt.Fprint(cmd.OutOrStdout(), filepath.Join(cfg.DataDir, name))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\ncopy them to each replica's data directory (mode 0700, owned by seb's user)")
			return nil
		},
	}
	for _, c := range []*cobra.Command{list, rotate, initKeys} {
		c.Flags().StringVar(&configPath, "config", "seb.hcl", "configuration file (for the data directory)")
		cmd.AddCommand(c)
	}
	return cmd
}

// currentKey returns the id of a key set's current key.
func currentKey(ks *broker.KeySet) string {
	for _, k := range ks.Keys() {
		if k.RetiredAt.IsZero() {
			return k.ID
		}
	}
	return ""
}
