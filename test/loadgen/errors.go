package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/callbrain/callbrain/test/saperly"
)

// ErrorKind classifies what went wrong with a delivery or a call.
type ErrorKind string

// The kinds of errors a run counts.
const (
	KindNon200    ErrorKind = "non_200"            // the brain answered with another status
	KindTimeout   ErrorKind = "timeout"            // no answer, or no end of it, in time
	KindBadNDJSON ErrorKind = "bad_ndjson"         // the answer broke the NDJSON rules (PROTOCOL §1.7)
	KindReset     ErrorKind = "connection_reset"   // the connection broke mid-request or mid-answer
	KindRefused   ErrorKind = "connection_refused" // nothing listens at the URL
	KindOther     ErrorKind = "other"
	// KindFailed marks a call whose deliveries failed (each counted by its own kind).
	KindFailed ErrorKind = "failed"
	// KindAborted marks a delivery or call cut by the end of the run (Ctrl-C or the hard
	// bound): not counted as an error.
	KindAborted ErrorKind = "aborted"
)

// Classify says what kind of failure a delivery's status and error are; "" when neither is
// one.
func Classify(status int, err error) ErrorKind {
	var ne net.Error
	switch {
	case err == nil && (status == http.StatusOK || status == 0):
		return ""
	case err == nil:
		return KindNon200
	case errors.Is(err, saperly.ErrProtocol):
		return KindBadNDJSON
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "server closed"):
		return KindReset
	case status != 0 && status != http.StatusOK:
		return KindNon200
	default:
		return KindOther
	}
}
