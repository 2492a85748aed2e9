package httpcode

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bootsrv/bootsrv/pkg/fault"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fault.Invalidf("bad"), 400},
		{fault.NotFoundf("gone"), 404},
		{fault.Conflictf("taken"), 409},
		{fault.Deniedf("no"), 403},
		{fmt.Errorf("wrapped: %w", fault.Deniedf("no")), 403},
		{fault.At("f.yaml:3", fault.InField("ip", fault.Invalidf("bad"))), 400},
		{errors.New("disk full"), 500},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	err := fault.At("f.yaml:3", fault.InField("ip", fault.Invalidf("not an address")))
	if fault.FieldOf(err) != "ip" || err.Error() != "f.yaml:3: field ip: not an address" {
		t.Errorf("At(InField) = %q field %q", err, fault.FieldOf(err))
	}
}
