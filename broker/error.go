package broker

import (
	"errors"
	"fmt"
)

// Error codes of the broker. Each maps to one HTTP status in package web.
const (
	EINVALID      = "invalid"      // bad input; the message says what
	ENOTFOUND     = "not_found"    // no such object
	ECONFLICT     = "conflict"     // the object's state does not allow it (already used, already approved…)
	EUNAUTHORIZED = "unauthorized" // who the caller is is not established
	EFORBIDDEN    = "forbidden"    // the caller may not do this
	EINTERNAL     = "internal"     // the broker's own failure; details only in the log
	EBUSY         = "busy"         // the caller has too much under way; try again later
)

// Error is the broker's application error: a code and a message that can
// be shown to the client. Anything else is internal.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err's *Error, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the client-facing message of err's *Error, or a
// generic one for anything internal.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
