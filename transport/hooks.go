package transport

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/labstack/echo/v4"
	"go.uber.org/zap"
)

// Receiver routes: one per notify-only platform (PROTOCOL §2), each registered only when the
// platform is configured.
const (
	RouteSalpre    = "/hooks/salpre"
	RouteItellico  = "/hooks/itellico"
	RouteSpeakNode = "/hooks/speaknode"
)

// Defaults of the receivers' settings where the platforms' documentation leaves them open.
const (
	DefaultItellicoSignatureHeader = "X-Itellico-Signature"
	DefaultItellicoTimestampHeader = "X-Itellico-Timestamp"
	DefaultSpeakNodeHeader         = "X-SpeakNode-Signature"
	DefaultHookDedupeTTL           = 24 * time.Hour
	// hookTimeout bounds the store work of one receiver delivery: the platforms want an
	// answer within a few seconds, and a store that hangs must read as one that is down.
	hookTimeout = 2 * time.Second
)

// Digest encodings of an HMAC signature header.
const (
	EncodingHex    = "hex"
	EncodingBase64 = "base64"
)

// Header is one HTTP header name and the value it must carry.
type Header struct{ Name, Value string }

// SalpreConfig turns on POST /hooks/salpre. Salpre signs nothing: the operator adds headers
// to the integration, and a delivery is accepted when it carries any one of Headers exactly
// (several, so a key can be rotated without downtime).
type SalpreConfig struct {
	Headers []Header
	// MaxAge, when set, refuses an event whose timestamp_utc is older than this (401
	// stale_timestamp). Off by default: Salpre does not say how late it retries.
	MaxAge time.Duration
}

// HMACConfig turns on an HMAC-signed receiver (itellicoAI, SpeakNode).
type HMACConfig struct {
	// Secrets are accepted in turn (the current and, during a rotation, the next one).
	Secrets         []string
	SignatureHeader string
	// TimestampHeader is itellicoAI's signed timestamp; unused by SpeakNode.
	TimestampHeader string
	// Encoding of the digest: EncodingHex (default) or EncodingBase64.
	Encoding string
	// MaxSkew is how far itellicoAI's signed timestamp may be from now. Default 300 s.
	MaxSkew time.Duration
}

// Hooks configures the receivers; a nil platform stays off (404).
type Hooks struct {
	Salpre    *SalpreConfig
	Itellico  *HMACConfig
	SpeakNode *HMACConfig
}

// HookReceiver is the part of the agent the receivers need.
type HookReceiver interface {
	// Receive records ev once; duplicate reports an event already processed. Errors:
	// agent.ErrEventInProgress, agent.ErrStoreDown.
	Receive(ctx context.Context, ev agent.HookEvent) (duplicate bool, err error)
}

func (s *Server) routeHooks(e *echo.Echo) {
	h := s.cfg.Hooks
	if h.Salpre != nil {
		e.POST(RouteSalpre, s.hook(agent.PlatformSalpre, s.verifySalpre, DecodeSalpre))
	}
	if h.Itellico != nil {
		e.POST(RouteItellico, s.hook(agent.PlatformItellico, s.verifyItellico, DecodeItellico))
	}
	if h.SpeakNode != nil {
		e.POST(RouteSpeakNode, s.hook(agent.PlatformSpeakNode, s.verifySpeakNode, DecodeSpeakNode))
	}
}

// hook handles one delivery of a notify-only platform, with one log line: verify on the raw
// bytes, decode, check the ids, record once, answer 200.
func (s *Server) hook(platform string, verify func(http.Header, []byte) error,
	decode func([]byte, time.Time) (agent.HookEvent, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		var ev agent.HookEvent
		outcome, verdict := outcomeRejected, "skipped"
		err := func() error {
			req := c.Request()
			body, err := s.readRequest(c)
			if err != nil {
				return err
			}
			if err := verify(req.Header, body); err != nil {
				verdict = "invalid_signature"
				if ve, ok := errors.AsType[*VerifyError](err); ok {
					verdict = ve.Reason
				}
				return httpError(http.StatusUnauthorized, verdict, err)
			}
			verdict = "ok"
			ev, err = decode(body, s.cfg.Now())
			if err != nil {
				msg := "invalid body"
				if de, ok := errors.AsType[*DecodeError](err); ok {
					msg = de.Msg
				}
				return httpError(http.StatusBadRequest, msg, err)
			}
			if platform == agent.PlatformSalpre && s.cfg.Hooks.Salpre.MaxAge > 0 && s.cfg.Now().Sub(ev.At) > s.cfg.Hooks.Salpre.MaxAge {
				verdict = ReasonStaleTimestamp
				return httpError(http.StatusUnauthorized, ReasonStaleTimestamp,
					fmt.Errorf("timestamp_utc %s older than %s", ev.At.Format(time.RFC3339), s.cfg.Hooks.Salpre.MaxAge))
			}
			if err := s.checkLengths([]field{
				{"call id", ev.CallID}, {"event id", ev.DedupeKey}, {"from", ev.From}, {"to", ev.To},
				{"direction", ev.Direction}, {"status", ev.Status}, {"source", ev.Source},
			}); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(req.Context(), hookTimeout)
			defer cancel()
			dup, err := s.hooks.Receive(ctx, ev)
			switch {
			case errors.Is(err, agent.ErrEventInProgress):
				outcome = "in_progress"
				return httpError(http.StatusServiceUnavailable, "event_in_progress", err)
			case err != nil:
				outcome = outcomeNotStored
				return httpError(http.StatusServiceUnavailable, "store_unavailable", err)
			case dup:
				outcome = "duplicate"
				return c.JSONBlob(http.StatusOK, []byte(`{"duplicate":true}`))
			}
			outcome = outcomeRecorded
			return c.JSONBlob(http.StatusOK, []byte("{}"))
		}()
		if err != nil {
			c.Error(err)
		}
		fields := []zap.Field{
			zap.String("route", c.Path()), zap.String("platform", platform),
			zap.String("event_type", clip(ev.Type)), zap.String("call_id", clip(ev.CallID)),
			zap.String("event_id", clip(ev.DedupeKey)), zap.Bool("is_test", ev.Test),
			zap.String("verify", verdict), zap.String("outcome", outcome),
			zap.Int("status", c.Response().Status),
			agent.Millis("elapsed_ms", time.Since(start)),
		}
		if ev.From != "" || ev.To != "" {
			fields = append(fields, zap.String("from", agent.MaskNumber(ev.From)), zap.String("to", agent.MaskNumber(ev.To)))
		}
		if err != nil {
			fields = append(fields, zap.Error(internal(err)))
		}
		if c.Response().Status >= 500 {
			s.log.Warn("hook delivery", fields...)
		} else {
			s.log.Info("hook delivery", fields...)
		}
		return nil
	}
}

// verifySalpre accepts a delivery carrying any one of the configured headers with its exact
// value. Every header is compared, in constant time, whichever matches.
func (s *Server) verifySalpre(h http.Header, _ []byte) error {
	ok := 0
	for _, want := range s.cfg.Hooks.Salpre.Headers {
		got := h.Get(want.Name)
		ok |= subtle.ConstantTimeCompare([]byte(got), []byte(want.Value)) & boolInt(got != "")
	}
	if ok == 1 {
		return nil
	}
	for _, want := range s.cfg.Hooks.Salpre.Headers {
		if h.Get(want.Name) != "" {
			return &VerifyError{Reason: "invalid_credentials"}
		}
	}
	return &VerifyError{Reason: "missing_credentials"}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// verifyItellico checks itellicoAI's HMAC-SHA256 over body + "." + timestamp, the MAC first
// and the clock second.
func (s *Server) verifyItellico(h http.Header, body []byte) error {
	cfg := s.cfg.Hooks.Itellico
	ts := strings.TrimSpace(h.Get(cfg.TimestampHeader))
	sig := strings.TrimSpace(h.Get(cfg.SignatureHeader))
	switch {
	case ts == "":
		return &VerifyError{Reason: ReasonMissingTimestamp}
	case sig == "":
		return &VerifyError{Reason: ReasonMissingSignature}
	}
	at, err := parseHookTime(ts)
	if err != nil {
		return &VerifyError{Reason: ReasonMalformedTimestamp}
	}
	signed := make([]byte, 0, len(body)+1+len(ts))
	signed = append(append(append(signed, body...), '.'), ts...)
	if err := checkMAC(cfg, signed, sig); err != nil {
		return err
	}
	skew := cfg.MaxSkew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	if d := s.cfg.Now().Sub(at); d > skew || d < -skew {
		return &VerifyError{Reason: ReasonStaleTimestamp}
	}
	return nil
}

// verifySpeakNode checks SpeakNode's HMAC-SHA256 of the raw body.
func (s *Server) verifySpeakNode(h http.Header, body []byte) error {
	cfg := s.cfg.Hooks.SpeakNode
	sig := strings.TrimSpace(h.Get(cfg.SignatureHeader))
	if sig == "" {
		return &VerifyError{Reason: ReasonMissingSignature}
	}
	return checkMAC(cfg, body, sig)
}

// checkMAC compares sig (optionally "sha256=" or "v1=" prefixed) with the MAC of signed under
// each secret.
func checkMAC(cfg *HMACConfig, signed []byte, sig string) error {
	if _, rest, ok := strings.Cut(sig, "="); ok && (strings.HasPrefix(sig, "sha256=") || strings.HasPrefix(sig, "v1=")) {
		sig = rest
	}
	var got []byte
	var err error
	if cfg.Encoding == EncodingBase64 {
		got, err = base64.StdEncoding.DecodeString(sig)
	} else {
		got, err = hex.DecodeString(sig)
	}
	if err != nil || len(got) != sha256.Size {
		return &VerifyError{Reason: ReasonMalformedSignature}
	}
	match := false
	for _, secret := range cfg.Secrets {
		if secret == "" {
			continue
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(signed)
		match = hmac.Equal(m.Sum(nil), got) || match
	}
	if !match {
		return &VerifyError{Reason: ReasonSignatureMismatch}
	}
	return nil
}

// SignHMAC returns the signature header value for signed under secret in encoding: what
// itellicoAI and SpeakNode send (for tests and tools).
func SignHMAC(secret string, signed []byte, encoding string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(signed)
	if encoding == EncodingBase64 {
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// parseHookTime reads a Unix timestamp in seconds or milliseconds, or RFC 3339.
func parseHookTime(v string) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > 1e12 {
			return time.UnixMilli(n), nil
		}
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: %w", clip(v), err)
	}
	return t, nil
}
