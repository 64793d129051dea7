package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/broker/sqlite"
)

// errAuditBroken makes `seb audit verify` exit with exitDiverged: the log
// was read, and it does not verify.
var errAuditBroken = errors.New("the audit log does not verify")

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify or export seb's hash-chained, signed audit log",
	}
	cmd.AddCommand(newAuditVerifyCommand(), newAuditExportCommand(), newAuditCheckpointCommand())
	return cmd
}

// auditSource opens the entries of a database (.db) or a JSON Lines file.
func auditSource(path string) (next func() (*broker.AuditEntry, error), closeFn func(), err error) {
	if strings.HasSuffix(path, ".db") {
		store, err := sqlite.Open(path, sqlite.Options{})
		if err != nil {
			return nil, nil, err
		}
		var (
			page  []*broker.AuditEntry
			after int64
		)
		next = func() (*broker.AuditEntry, error) {
			if len(page) == 0 {
				page, err = store.AuditEntries(context.Background(), after, 1000)
				if err != nil {
					return nil, err
				}
				if len(page) == 0 {
					return nil, io.EOF
				}
			}
			e := page[0]
			page = page[1:]
			after = e.Seq
			return e, nil
		}
		return next, func() { store.Close() }, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return broker.AuditJSONLReader(bufio.NewReader(f)), func() { f.Close() }, nil
}

func newAuditVerifyCommand() *cobra.Command {
	var (
		publicKey   string
		checkpoints []string
		cf          clientFlags
	)
	cmd := &cobra.Command{
		Use:   "verify [--public-key FILE] [--checkpoint FILE]... [DB|FILE.jsonl]",
		Short: "Check the audit log with only seb's public key",
		Long: `Verify reads the audit log from seb's database (a path ending in .db), from
a JSON Lines export, or — with no argument — from the seb server (--server,
with a reviewer's or an admin's token), and checks with only the public key
that every entry is signed, that each links to the one before by its hash,
and that nothing was changed, erased, removed, inserted or reordered. It
reports the first bad entry. The public key comes from --public-key, or
from the server.

A chain alone cannot show that its tail was cut. Save checkpoints
(seb audit checkpoint > FILE, or GET /api/v1/audit/checkpoint) now and
then; each --checkpoint proves the log still holds the entries it counted,
unchanged.

Exit status: 0 the log verifies, 1 it does not, 2 an error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var keyServer string
			if publicKey == "" {
				if len(args) > 0 {
					return errors.New("--public-key is required with a database or file: a PEM file of seb's public signing key")
				}
				keyServer = cf.server
			}
			keys, err := signingKey(publicKey, keyServer)
			if err != nil {
				return err
			}
			var marks []*broker.Checkpoint
			for _, path := range checkpoints {
				env, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				c, err := broker.VerifyCheckpoint(env, keys...)
				if err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "FAILED: checkpoint %s: %s\n", path, broker.ErrorMessage(err))
					return errAuditBroken
				}
				marks = append(marks, c)
			}
			var next func() (*broker.AuditEntry, error)
			if len(args) == 1 {
				var closeFn func()
				if next, closeFn, err = auditSource(args[0]); err != nil {
					return err
				}
				defer closeFn()
			} else {
				client, err := cf.client(cmd)
				if err != nil {
					return err
				}
				body, err := client.call(cmd.Context(), "GET", "/audit/export", nil)
				if err != nil {
					return err
				}
				next = broker.AuditJSONLReader(bufio.NewReader(bytes.NewReader(body)))
			}
			count, head, err := broker.VerifyAuditAgainst(next, keys, marks...)
			var brk *broker.AuditBreak
			var cut *broker.CheckpointBreak
			switch {
			case errors.As(err, &brk):
				fmt.Fprintf(cmd.OutOrStdout(), "FAILED after %d good entries: %v\n", count, err)
				return errAuditBroken
			case errors.As(err, &cut):
				fmt.Fprintf(cmd.OutOrStdout(), "FAILED: %v\n", err)
				return errAuditBroken
			case err != nil:
				return err
			}
			if count == 0 {
				head = "(empty log)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %d entries, signed by %s; head %s", count, signers(keys), head)
			if len(marks) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "; %d checkpoint(s) hold", len(marks))
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "PEM file of seb's public signing key (default: fetched from --server)")
	cmd.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "a checkpoint saved earlier (seb audit checkpoint); may be repeated")
	cf.register(cmd)
	return cmd
}

func newAuditCheckpointCommand() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "checkpoint [--server URL]",
		Short: "Save a signed checkpoint of the audit log: its length and head",
		Long: `Checkpoint fetches from the seb server a checkpoint signed now — the audit
log's entry count and the hash of its last entry, as a DSSE envelope — and
writes it to standard output. Keep it somewhere seb cannot reach; later,
seb audit verify --checkpoint FILE proves the log was not cut or rewritten
below it. No token is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client := &http.Client{Timeout: 30 * time.Second}
			resp, err := client.Get(strings.TrimSuffix(server, "/") + "/api/v1/audit/checkpoint")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: the checkpoint: %s", server, resp.Status)
			}
			_, err = cmd.OutOrStdout().Write(append(body, '\n'))
			return err
		},
	}
	cmd.Flags().StringVar(&server, "server", defaultServer, "URL of the seb server")
	return cmd
}

func newAuditExportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "export DB",
		Short: "Write the audit log as JSON Lines to standard output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			next, closeFn, err := auditSource(args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			var entries []*broker.AuditEntry
			for {
				e, err := next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				entries = append(entries, e)
			}
			return broker.WriteAuditJSONL(cmd.OutOrStdout(), entries)
		},
	}
}

// signers names the keys an audit log was checked with.
func signers(keys []ed25519.PublicKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = broker.PublicKeyID(k)
	}
	return strings.Join(ids, " or ")
}
