package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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
	cmd.AddCommand(newAuditVerifyCommand(), newAuditExportCommand())
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
	var publicKey string
	cmd := &cobra.Command{
		Use:   "verify --public-key FILE DB|FILE.jsonl",
		Short: "Check the audit log with only seb's public key",
		Long: `Verify reads the audit log from seb's database (a path ending in .db) or from
a JSON Lines export, and checks with only the public key that every entry is
signed, that each links to the one before by its hash, and that nothing was
changed, removed, inserted or reordered. It reports the first bad entry.
The last entry's hash is printed: keep it elsewhere, and a later run can
prove the log was not cut short.

Exit status: 0 the log verifies, 1 it does not, 2 an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if publicKey == "" {
				return errors.New("--public-key is required: a PEM file of seb's public signing key")
			}
			pemBytes, err := os.ReadFile(publicKey)
			if err != nil {
				return err
			}
			pub, err := broker.ParsePublicKeyPEM(pemBytes)
			if err != nil {
				return fmt.Errorf("%s: %v", publicKey, broker.ErrorMessage(err))
			}
			next, closeFn, err := auditSource(args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			var last *broker.AuditEntry
			count, err := broker.VerifyAudit(func() (*broker.AuditEntry, error) {
				e, err := next()
				if e != nil {
					last = e
				}
				return e, err
			}, pub)
			var brk *broker.AuditBreak
			if errors.As(err, &brk) {
				fmt.Fprintf(cmd.OutOrStdout(), "FAILED after %d good entries: %v\n", count, err)
				return errAuditBroken
			}
			if err != nil {
				return err
			}
			head := "(empty log)"
			if last != nil {
				head = last.Hash
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %d entries, signed by %s; head %s\n", count, broker.PublicKeyID(pub), head)
			return nil
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "PEM file of seb's public signing key")
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
