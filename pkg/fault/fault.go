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
	// Also are other fields the message names ("pod_network overlaps
	// service_range"), for doors that reword field names.
	Also []string
	Msg  string
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

// AlsoOf returns the other fields err names.
func AlsoOf(err error) []string {
	var e *Error
	if errors.As(err, &e) {
		return e.Also
	}
	return nil
}

// InField marks err as being about field, keeping its kind; the message
// says "field F: ..." so that a reader of a file import sees it too.
func InField(field string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	return &Error{Kind: e.Kind, Field: field, Also: e.Also, Msg: "field " + field + ": " + e.Msg}
}

// WithField marks err as being about field, keeping its kind and words.
func WithField(field string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	return &Error{Kind: e.Kind, Field: field, Also: e.Also, Msg: e.Msg}
}

// Field is an error about one field, worded with its name; also are other
// fields the message names.
func Field(kind Kind, field, format string, a ...any) error {
	return &Error{Kind: kind, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Fields is a KindInvalid error about fields[0], whose message also names
// fields[1:].
func Fields(fields []string, format string, a ...any) error {
	return &Error{Kind: KindInvalid, Field: fields[0], Also: fields[1:], Msg: fmt.Sprintf(format, a...)}
}

// Reword replaces, in err's message, the first mention of each field it
// names with what words has for it: a door's own names for the model's
// fields (the CLI's flags). Other errors are returned as they are.
func Reword(err error, words map[string]string) error {
	var e *Error
	if !errors.As(err, &e) || e.Field == "" {
		return err
	}
	msg := e.Msg
	for _, f := range append([]string{e.Field}, e.Also...) {
		if w, ok := words[f]; ok {
			msg = replaceWord(msg, f, w)
		}
	}
	return &Error{Kind: e.Kind, Field: e.Field, Also: e.Also, Msg: msg}
}

// replaceWord replaces the first occurrence of word that stands alone (not
// inside a longer name) in s.
func replaceWord(s, word, with string) string {
	inName := func(b byte) bool {
		return b == '_' || b == '-' || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z') || ('0' <= b && b <= '9')
	}
	for i := 0; i+len(word) <= len(s); i++ {
		end := i + len(word)
		if s[i:end] == word && (i == 0 || !inName(s[i-1]) && s[i-1] != '.') && (end == len(s) || !inName(s[end])) {
			return s[:i] + with + s[end:]
		}
	}
	return s
}

// At prefixes an error with where the input came from ("file.yaml:3"),
// keeping its kind and fields.
func At(source string, err error) error {
	if source == "" || err == nil {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Kind: e.Kind, Field: e.Field, Also: e.Also, Msg: source + ": " + e.Msg}
	}
	return fmt.Errorf("%s: %w", source, err)
}
