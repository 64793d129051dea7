package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"

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
// record referred to. Anything else of the driver (a lock not taken in
// time, I/O errors, corruption) becomes an internal error whose text keeps
// the detail for the log but which wraps no driver type. A *broker.Error
// passes unchanged, and so do errors that come from neither database/sql
// nor the driver (they are wrapped with t).
func (s *Store) formatError(err error, t target) error {
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
	switch s.d.Classify(err) {
	case NotDriver:
		return fmt.Errorf("%s: %s: %w", s.d.Name, t, err)
	case Unique:
		if t.conflict != "" {
			return broker.Errorf(broker.ECONFLICT, "%s", t.conflict)
		}
		return broker.Errorf(broker.ECONFLICT, "%s already exists", t)
	case Check:
		return broker.Errorf(broker.ECONFLICT, "%s breaks a rule of the store", t)
	case ForeignKey:
		if t.refKind != "" {
			return broker.Errorf(broker.ENOTFOUND, "%s not found", target{kind: t.refKind, id: t.refID})
		}
		return broker.Errorf(broker.ENOTFOUND, "%s refers to a record that does not exist", t)
	case Busy:
		return fmt.Errorf("%s: %s: the database stayed locked too long: %v", s.d.Name, t, err)
	}
	return fmt.Errorf("%s: %s: %v", s.d.Name, t, err)
}
