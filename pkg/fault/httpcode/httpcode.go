// Package httpcode maps fault kinds to HTTP status codes, for the doors
// that speak HTTP (the admin API, the boot chain): the core below them
// knows nothing of HTTP.
package httpcode

import (
	"net/http"

	"github.com/bootsrv/bootsrv/pkg/fault"
)

// Of is the status an HTTP door answers err with: 4xx for the caller's
// mistakes, 500 for bootsrv's own.
func Of(err error) int {
	switch fault.KindOf(err) {
	case fault.KindInvalid:
		return http.StatusBadRequest
	case fault.KindNotFound:
		return http.StatusNotFound
	case fault.KindConflict:
		return http.StatusConflict
	case fault.KindDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}
