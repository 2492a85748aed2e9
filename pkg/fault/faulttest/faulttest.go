// Package faulttest checks errors the way a user reads them: of the right
// kind, and saying what they must say.
package faulttest

import (
	"strings"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/fault"
)

// Want checks that err is a fault of kind with every substring in its
// message, so a test names what the user would read.
func Want(t testing.TB, err error, kind fault.Kind, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a %s error containing %q", kind, subs)
	}
	if k := fault.KindOf(err); k != kind {
		t.Errorf("kind of %q = %q, want %q", err, k, kind)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}
