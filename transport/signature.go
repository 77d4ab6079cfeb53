package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Saperly's delivery headers (PROTOCOL §1.1).
const (
	HeaderTimestamp  = "X-Saperly-Timestamp"
	HeaderDeliveryID = "X-Saperly-Delivery-Id"
	HeaderSignature  = "X-Saperly-Signature"
	HeaderAttempt    = "X-Saperly-Delivery-Attempt"
)

// VerifyError is a rejected signature. Reason is one of Saperly's SDK reason codes and is safe
// to return to the sender.
type VerifyError struct{ Reason string }

func (e *VerifyError) Error() string { return "signature: " + e.Reason }

// Signature failure reasons, as Saperly's own SDKs name them (PROTOCOL §1.2).
const (
	ReasonMissingTimestamp   = "missing_timestamp"
	ReasonMissingDeliveryID  = "missing_delivery_id"
	ReasonMissingSignature   = "missing_signature"
	ReasonMalformedTimestamp = "malformed_timestamp"
	ReasonMalformedSignature = "malformed_signature"
	ReasonUnknownVersion     = "unknown_version"
	ReasonSignatureMismatch  = "signature_mismatch"
	ReasonStaleTimestamp     = "stale_timestamp"
)

// Sign returns the x-saperly-signature header value for a delivery: "v1=" and the lowercase
// hex HMAC-SHA256, keyed with the secret string's own bytes, of "timestamp.deliveryID.body".
func Sign(secret, timestamp, deliveryID string, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, timestamp, deliveryID, body))
}

func mac(secret, timestamp, deliveryID string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write([]byte(deliveryID))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery's signature over the raw body against each accepted secret (the
// line's current and staged next secret), then its timestamp against now. The MAC is checked
// before the clock, so the answer does not tell an attacker which of the two failed first.
// Empty secrets are skipped, so a line with no secret configured accepts nothing. A rejection
// is a *VerifyError.
func Verify(h http.Header, body []byte, secrets []string, now time.Time, skew time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	id := h.Get(HeaderDeliveryID)
	sig := h.Get(HeaderSignature)
	switch {
	case ts == "":
		return &VerifyError{ReasonMissingTimestamp}
	case id == "":
		return &VerifyError{ReasonMissingDeliveryID}
	case sig == "":
		return &VerifyError{ReasonMissingSignature}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || !isDigits(ts) {
		return &VerifyError{ReasonMalformedTimestamp}
	}
	version, digest, ok := strings.Cut(sig, "=")
	if !ok {
		return &VerifyError{ReasonMalformedSignature}
	}
	if version != "v1" {
		return &VerifyError{ReasonUnknownVersion}
	}
	// Saperly sends 64 lowercase hex digits; anything else is malformed. Accepting only the
	// form Sign produces keeps one valid header per (secret, delivery).
	if !isLowerHex(digest) || len(digest) != hex.EncodedLen(sha256.Size) {
		return &VerifyError{ReasonMalformedSignature}
	}
	got, err := hex.DecodeString(digest)
	if err != nil {
		return &VerifyError{ReasonMalformedSignature}
	}
	matched := false
	for _, s := range secrets {
		// An empty secret is a configuration gap (no staged next secret, say), never a key:
		// anyone can compute an HMAC keyed with nothing.
		if s == "" {
			continue
		}
		// Every secret is tried, so the time taken does not reveal which one matched.
		if hmac.Equal(got, mac(s, ts, id, body)) {
			matched = true
		}
	}
	if !matched {
		return &VerifyError{ReasonSignatureMismatch}
	}
	if d := now.Sub(time.Unix(sec, 0)); d > skew || d < -skew {
		return &VerifyError{ReasonStaleTimestamp}
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && (s[i] < 'a' || s[i] > 'f') {
			return false
		}
	}
	return s != ""
}

// DevSecret is the signing secret a development server accepts when SAPERLY_WEBHOOK_SECRET is
// unset, on loopback only. callsim signs with it by default.
const DevSecret = "callbrain-dev-secret-not-for-production"
