package profiles

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error so that every door (CLI exit code, HTTP status)
// reports it the same way.
type Kind string

const (
	KindInvalid  Kind = "invalid"   // bad input: fix the request
	KindNotFound Kind = "not_found" // the named thing does not exist
	KindConflict Kind = "conflict"  // clashes with what is stored
	KindDenied   Kind = "denied"    // a token is missing, wrong or expired
)

// Error is an error with a Kind and a message that says what is wrong and
// how to fix it.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func invalidf(format string, a ...any) error {
	return &Error{Kind: KindInvalid, Msg: fmt.Sprintf(format, a...)}
}

func notFoundf(format string, a ...any) error {
	return &Error{Kind: KindNotFound, Msg: fmt.Sprintf(format, a...)}
}

func conflictf(format string, a ...any) error {
	return &Error{Kind: KindConflict, Msg: fmt.Sprintf(format, a...)}
}

// KindOf returns the Kind of err, or "" for internal errors.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// at prefixes an error with where the input came from, keeping its kind.
func at(source string, err error) error {
	if source == "" || err == nil {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Kind: e.Kind, Msg: source + ": " + e.Msg}
	}
	return fmt.Errorf("%s: %w", source, err)
}

// HTTPStatus is the status every HTTP door (admin API, boot chain) answers
// err with: 4xx for the caller's mistakes, 500 for bootsrv's own.
func HTTPStatus(err error) int {
	switch KindOf(err) {
	case KindInvalid:
		return http.StatusBadRequest
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}
