// Package fault is the error vocabulary every layer of bootsrv shares: an
// error carries a Kind (what sort of mistake, so each door answers it the
// same way: an exit code, an HTTP status) and, when one input field is at
// fault, that field's name as the model spells it ("api_server",
// "labels"). The core words what is wrong; each door adds its own hint
// (the CLI names its flag, a file import its line, the admin API returns
// the field), so nothing here knows about flags, files or HTTP.
package fault

import (
	"errors"
	"fmt"
)

// Kind classifies an error.
type Kind string

const (
	KindInvalid  Kind = "invalid"   // bad input: fix the request
	KindNotFound Kind = "not_found" // the named thing does not exist
	KindConflict Kind = "conflict"  // clashes with what is stored
	KindDenied   Kind = "denied"    // a token is missing, wrong or expired
)

// Error is an error with a Kind, the field at fault ("" when the input as
// a whole is) and a message that says what is wrong and how to fix it.
type Error struct {
	Kind  Kind
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

// Invalidf is a KindInvalid error.
func Invalidf(format string, a ...any) error {
	return &Error{Kind: KindInvalid, Msg: fmt.Sprintf(format, a...)}
}

// NotFoundf is a KindNotFound error.
func NotFoundf(format string, a ...any) error {
	return &Error{Kind: KindNotFound, Msg: fmt.Sprintf(format, a...)}
}

// Conflictf is a KindConflict error.
func Conflictf(format string, a ...any) error {
	return &Error{Kind: KindConflict, Msg: fmt.Sprintf(format, a...)}
}

// Deniedf is a KindDenied error.
func Deniedf(format string, a ...any) error {
	return &Error{Kind: KindDenied, Msg: fmt.Sprintf(format, a...)}
}

// KindOf returns the Kind of err, or "" for internal errors.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// FieldOf returns the input field err names, or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// InField marks err as being about field, keeping its kind; the message
// says "field F: ..." so that a reader of a file import sees it too.
func InField(field string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	return &Error{Kind: e.Kind, Field: field, Msg: "field " + field + ": " + e.Msg}
}

// Field is a KindInvalid error about one field, already worded with it.
func Field(kind Kind, field, format string, a ...any) error {
	return &Error{Kind: kind, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// At prefixes an error with where the input came from ("file.yaml:3"),
// keeping its kind and field.
func At(source string, err error) error {
	if source == "" || err == nil {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Kind: e.Kind, Field: e.Field, Msg: source + ": " + e.Msg}
	}
	return fmt.Errorf("%s: %w", source, err)
}
