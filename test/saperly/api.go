package saperly

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/callbrain/callbrain/test/serve"
)

// APIBasePath is where Saperly's REST API lives on its host. A brain's API base URL is the
// stand-in's URL followed by it, as https://saperly.com/api/v1 is in production.
const APIBasePath = "/api/v1"

// API is a stand-in for the part of Saperly's REST API a brain calls: hanging up a call
// (PROTOCOL §1.9, POST /api/v1/calls/{call_id}/hangup), sending an SMS (§1.5,
// POST /api/v1/messages), and looking up a call (GET /api/v1/calls/{call_id}: the calls
// registered with AddCall, 404 for any other). It is an http.Handler; serve it with httptest or http.Server and
// give the brain its URL + APIBasePath. It records every authenticated request, and can be
// told to fail or be slow (SetFault). It is safe for concurrent use.
type API struct {
	key [sha256.Size]byte
	any bool // no key configured: any bearer token is accepted
	mux *http.ServeMux

	mu       sync.Mutex
	fault    Fault
	hangups  []Hangup
	messages []SMS
	calls    map[string]string // call id → line id, for lookups
	lookups  []string          // call ids looked up, in order
	changed  chan struct{}     // closed and replaced on every record, to wake WaitHangup
}

// Hangup is one authenticated hang-up request.
type Hangup struct {
	CallID string
	// At is when the request arrived.
	At time.Time
	// Status is what the API answered: 200, a Fault's status, or 0 when the client went
	// away during a Fault's delay.
	Status int
}

// SMS is one authenticated request to send an SMS.
type SMS struct {
	LineID, To, Text string
	// At is when the request arrived.
	At time.Time
	// Status is what the API answered, as in Hangup.
	Status int
	// SID is the message_sid answered, when Status is 200.
	SID string
}

// Fault makes the API misbehave, to test how a brain copes. The zero Fault is none.
type Fault struct {
	// Status, when not 0, answers with this HTTP status and {"error":…} instead of doing the
	// request (e.g. 500, 503 or 429).
	Status int
	// Delay holds each answer this long first, or until the client gives up.
	Delay time.Duration
	// Times limits the fault to the next Times requests, after which the API behaves again;
	// 0 means every request until SetFault is called again.
	Times int
}

// NewAPI returns an API that requires Authorization: Bearer key on every request and answers
// 401 otherwise. An empty key accepts any non-empty bearer token.
func NewAPI(key string) *API {
	a := &API{key: sha256.Sum256([]byte(key)), any: key == "", mux: http.NewServeMux(), changed: make(chan struct{})}
	a.mux.HandleFunc("POST "+APIBasePath+"/calls/{call_id}/hangup", a.hangup)
	a.mux.HandleFunc("POST "+APIBasePath+"/messages", a.message)
	a.mux.HandleFunc("GET "+APIBasePath+"/calls/{call_id}", a.getCall)
	a.mux.HandleFunc("PUT "+MockCallsPath+"{call_id}", a.putCall)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeAPIError(w, http.StatusUnauthorized, "invalid_api_key")
		return
	}
	a.mux.ServeHTTP(w, r)
}

// SetFault makes the following requests misbehave as f says; SetFault(Fault{}) heals the API.
func (a *API) SetFault(f Fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fault = f
}

// Hangups returns every authenticated hang-up request so far, failed ones too, in the order
// they were answered.
func (a *API) Hangups() []Hangup {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Hangup(nil), a.hangups...)
}

// Count returns how many times this call was hung up: its hang-up requests answered 200.
func (a *API) Count(callID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, h := range a.hangups {
		if h.CallID == callID && h.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// WaitHangup waits until this call has been hung up (a hang-up request answered 200) and
// returns that hang-up. It returns the context's cause if ctx ends first.
func (a *API) WaitHangup(ctx context.Context, callID string) (Hangup, error) {
	for {
		a.mu.Lock()
		for _, h := range a.hangups {
			if h.CallID == callID && h.Status == http.StatusOK {
				a.mu.Unlock()
				return h, nil
			}
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return Hangup{}, fmt.Errorf("wait for hang-up of %s: %w", callID, context.Cause(ctx))
		case <-changed:
		}
	}
}

// MockCallsPath is the stand-in's own endpoint (not Saperly's) to register a call for
// lookups while it runs: PUT MockCallsPath+"{call_id}" with {"line_id":…}.
const MockCallsPath = "/mock/calls/"

// AddCall makes the API know a call on a line, so a lookup of it answers 200 with the call.
func (a *API) AddCall(callID, lineID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.calls == nil {
		a.calls = make(map[string]string)
	}
	a.calls[callID] = lineID
}

// Lookups returns the call ids looked up so far (authenticated requests), in order.
func (a *API) Lookups() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.lookups...)
}

// Messages returns every authenticated SMS request so far, failed ones too, in the order
// they were answered.
func (a *API) Messages() []SMS {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]SMS(nil), a.messages...)
}

func (a *API) authorized(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return false
	}
	if a.any {
		return true
	}
	// Comparing digests keeps the comparison constant-time whatever the token's length.
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], a.key[:]) == 1
}

// takeFault returns the fault for the request arriving now, counting it against Times.
func (a *API) takeFault() Fault {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fault
	if a.fault.Times > 0 {
		if a.fault.Times--; a.fault.Times == 0 {
			a.fault = Fault{}
		}
	}
	return f
}

// hold waits out a fault's delay; false means the client went away first.
func hold(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// failing returns the status a fault answers instead of doing the request, or 0.
func (f Fault) failing() int {
	if f.Status == http.StatusOK {
		return 0
	}
	return f.Status
}

// Each handler records the request before answering, so a client that has its answer finds
// the record.

func (a *API) hangup(w http.ResponseWriter, r *http.Request) {
	h := Hangup{CallID: r.PathValue("call_id"), At: time.Now()}
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBody)) // the body says nothing we need
	f := a.takeFault()
	switch {
	case !hold(r.Context(), f.Delay):
		a.recordHangup(h)
	case f.failing() != 0:
		h.Status = f.failing()
		a.recordHangup(h)
		writeAPIError(w, h.Status, fmt.Sprintf("scripted failure %d", h.Status))
	default:
		h.Status = http.StatusOK
		a.recordHangup(h)
		serve.JSON(w, h.Status, map[string]string{"call_id": h.CallID, "status": "hanging_up"})
	}
}

func (a *API) message(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	var body struct {
		LineID string `json:"line_id"`
		To     string `json:"to"`
		Text   string `json:"text"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	if body.LineID == "" || body.To == "" || body.Text == "" {
		writeAPIError(w, http.StatusBadRequest, "line_id, to and text are required")
		return
	}
	m := SMS{LineID: body.LineID, To: body.To, Text: body.Text, At: at}
	f := a.takeFault()
	switch {
	case !hold(r.Context(), f.Delay):
		a.recordSMS(m)
	case f.failing() != 0:
		m.Status = f.failing()
		a.recordSMS(m)
		writeAPIError(w, m.Status, fmt.Sprintf("scripted failure %d", m.Status))
	default:
		m.Status = http.StatusOK
		m.SID = "SM" + strings.ReplaceAll(NewUUID(), "-", "")
		a.recordSMS(m)
		serve.JSON(w, m.Status, map[string]string{"message_sid": m.SID, "status": "queued"})
	}
}

// getCall answers a lookup with the call object: id, line_id and a status; 404 for a call
// it does not know. A Fault applies.
func (a *API) getCall(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("call_id")
	a.mu.Lock()
	a.lookups = append(a.lookups, id)
	lineID, ok := a.calls[id]
	a.mu.Unlock()
	f := a.takeFault()
	switch {
	case !hold(r.Context(), f.Delay):
	case f.failing() != 0:
		writeAPIError(w, f.failing(), fmt.Sprintf("scripted failure %d", f.failing()))
	case !ok:
		writeAPIError(w, http.StatusNotFound, "call not found")
	default:
		serve.JSON(w, http.StatusOK, map[string]string{"id": id, "call_id": id, "line_id": lineID, "status": "in-progress"})
	}
}

func (a *API) putCall(w http.ResponseWriter, r *http.Request) {
	var body struct {
		LineID string `json:"line_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	a.AddCall(r.PathValue("call_id"), body.LineID)
	serve.JSON(w, http.StatusOK, map[string]string{"call_id": r.PathValue("call_id"), "line_id": body.LineID})
}

func (a *API) recordHangup(h Hangup) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hangups = append(a.hangups, h)
	a.wake()
}

func (a *API) recordSMS(m SMS) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.messages = append(a.messages, m)
	a.wake()
}

// wake tells every waiter that something was recorded. Call it with a.mu held.
func (a *API) wake() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func writeAPIError(w http.ResponseWriter, status int, msg string) {
	serve.JSON(w, status, map[string]string{"error": msg})
}
