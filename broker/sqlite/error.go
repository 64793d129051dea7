package sqlite

import (
	"database/sql"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/seb-broker/seb/broker"
)

// A target names the record an operation reads or writes, for the messages
// of the errors formatError returns.
type target struct {
	kind, id string // "proposal", "p-123"
	// refKind and refID name the record a foreign key of this one points
	// at: violating it is ENOTFOUND of that record.
	refKind, refID string
	// conflict, if set, replaces the message for a uniqueness violation.
	conflict string
}

func (t target) String() string {
	if t.id == "" {
		return t.kind
	}
	return t.kind + " " + t.id
}

// formatError translates err, from the driver or database/sql, into what
// the Store contract promises: a missing row is ENOTFOUND, a violated
// uniqueness or check ECONFLICT, a dangling reference ENOTFOUND of the
// record referred to. Anything else of the driver (SQLITE_BUSY once
// busy_timeout is spent, I/O errors, corruption) becomes an internal error
// whose text keeps the detail for the log but which wraps no driver type.
// A *broker.Error passes unchanged, and so do errors that come from
// neither database/sql nor the driver (they are wrapped with t).
func formatError(err error, t target) error {
	if err == nil {
		return nil
	}
	var be *broker.Error
	if errors.As(err, &be) {
		return be
	}
	if errors.Is(err, sql.ErrNoRows) {
		return broker.Errorf(broker.ENOTFOUND, "%s not found", t)
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("sqlite: %s: %w", t, err)
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		if t.conflict != "" {
			return broker.Errorf(broker.ECONFLICT, "%s", t.conflict)
		}
		return broker.Errorf(broker.ECONFLICT, "%s already exists", t)
	case sqlite3.SQLITE_CONSTRAINT_CHECK:
		return broker.Errorf(broker.ECONFLICT, "%s breaks a rule of the store", t)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		if t.refKind != "" {
			return broker.Errorf(broker.ENOTFOUND, "%s not found", target{kind: t.refKind, id: t.refID})
		}
		return broker.Errorf(broker.ENOTFOUND, "%s refers to a record that does not exist", t)
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("sqlite: %s: the database stayed locked past the busy timeout: %v", t, err)
	}
	return fmt.Errorf("sqlite: %s: %v", t, err)
}
