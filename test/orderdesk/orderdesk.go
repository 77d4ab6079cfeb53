// Package orderdesk is the example tool endpoint of the example order-status agent: a small
// order-status backend that the agent's HTTP tool calls, served by cmd/orderdesk and usable
// in-process by tests. It answers from a fixed in-memory table, honours Idempotency-Key, and
// counts the work it does, so a test or an operator can see that a tool ran exactly once.
//
// Endpoints:
//
//	POST /orders/status  {"order_id":"12345"} → 200 {"order_id","status","carrier","eta"};
//	                     unknown id → 404 {"error":"order not found"}; malformed → 400
//	GET  /stats          {"requests":N,"side_effects":M}
//
// With a token configured, every endpoint requires Authorization: Bearer <token> (401
// otherwise). A request repeating an Idempotency-Key gets the stored answer, marked with
// Idempotent-Replayed: true, without the work being done again; a repeat that arrives while
// the first is still being worked on waits for its answer; a key reused for another order is
// refused with 422.
//
// It imports nothing of callbrain.
package orderdesk

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Limits that keep a long-running example server small.
const (
	maxBody   = 64 << 10 // a status request is a few bytes
	maxKeyLen = 255      // as payment APIs bound Idempotency-Key
	maxKeys   = 10000    // keys remembered; the oldest are forgotten first
)

// Order is one order's status, as POST /orders/status answers it.
type Order struct {
	ID      string `json:"order_id"`
	Status  string `json:"status"`
	Carrier string `json:"carrier,omitempty"`
	ETA     string `json:"eta,omitempty"`
}

// Orders returns the built-in table, keyed by order id (a fresh copy).
func Orders() map[string]Order {
	return map[string]Order{
		"12345": {ID: "12345", Status: "shipped", Carrier: "UPS", ETA: "Thursday"},
		"23456": {ID: "23456", Status: "processing", ETA: "Monday"},
		"34567": {ID: "34567", Status: "delivered", Carrier: "FedEx"},
		"45678": {ID: "45678", Status: "cancelled"},
		"98765": {ID: "98765", Status: "out for delivery", Carrier: "USPS", ETA: "today"},
	}
}

// Config configures a Server.
type Config struct {
	// Token, when set, is required as Authorization: Bearer <Token> on every endpoint.
	Token string
	// Delay is how long looking an order up takes, to simulate a slow backend. A replayed
	// answer comes at once.
	Delay time.Duration
	// Orders is the table; nil uses Orders().
	Orders map[string]Order
}

// Stats counts what the server did.
type Stats struct {
	// Requests counts POST /orders/status requests that passed the token check, replays and
	// malformed ones included.
	Requests int `json:"requests"`
	// SideEffects counts the lookups actually done: one per distinct Idempotency-Key, and one
	// per request without a key.
	SideEffects int `json:"side_effects"`
}

// Server is the order desk, an http.Handler. It is safe for concurrent use.
type Server struct {
	token  [sha256.Size]byte
	secure bool
	delay  time.Duration
	orders map[string]Order
	mux    *http.ServeMux

	mu    sync.Mutex
	stats Stats
	keys  map[string]*entry
	order []string // keys, oldest first, to forget the oldest beyond maxKeys
}

// entry is the answer stored under one Idempotency-Key.
type entry struct {
	orderID string
	done    chan struct{} // closed once the answer is stored, or the work abandoned
	// Set before done is closed.
	abandoned bool
	status    int
	body      []byte
}

// New returns an order desk.
func New(cfg Config) *Server {
	orders := cfg.Orders
	if orders == nil {
		orders = Orders()
	}
	s := &Server{
		token:  sha256.Sum256([]byte(cfg.Token)),
		secure: cfg.Token != "",
		delay:  cfg.Delay,
		orders: maps.Clone(orders),
		mux:    http.NewServeMux(),
		keys:   map[string]*entry{},
	}
	s.mux.HandleFunc("POST /orders/status", s.status)
	s.mux.HandleFunc("GET /stats", s.statsHandler)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.secure && !s.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, errorBody("unauthorized"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Server) authorized(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	// Comparing digests keeps the comparison constant-time whatever the token's length.
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.Requests++
	s.mu.Unlock()

	id, err := decodeOrderID(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("malformed request: "+err.Error()))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxKeyLen {
		writeJSON(w, http.StatusBadRequest, errorBody(fmt.Sprintf("Idempotency-Key longer than %d characters", maxKeyLen)))
		return
	}
	ctx := r.Context()
	if key == "" {
		status, body, err := s.lookUp(ctx, id)
		if err != nil {
			return // the client went away: nobody to answer
		}
		writeRaw(w, status, body)
		return
	}

	for {
		e, owner := s.claim(key, id)
		if e.orderID != id {
			writeJSON(w, http.StatusUnprocessableEntity, errorBody("Idempotency-Key reused for a different order"))
			return
		}
		if owner {
			status, body, err := s.lookUp(ctx, id)
			s.settle(key, e, status, body, err)
			if err != nil {
				return
			}
			writeRaw(w, status, body)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-e.done:
		}
		if e.abandoned {
			continue // the first try's client left before the work was done: do it now
		}
		w.Header().Set("Idempotent-Replayed", "true")
		writeRaw(w, e.status, e.body)
		return
	}
}

// claim returns the entry for key, creating it when it is new; owner reports that the caller
// created it and must do the work.
func (s *Server) claim(key, orderID string) (e *entry, owner bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.keys[key]; ok {
		return e, false
	}
	e = &entry{orderID: orderID, done: make(chan struct{})}
	s.keys[key] = e
	s.order = append(s.order, key)
	if len(s.order) > maxKeys {
		delete(s.keys, s.order[0])
		s.order = s.order[1:]
	}
	return e, true
}

// settle stores the answer under key, or forgets the key when the work was abandoned, and
// wakes the requests waiting for it.
func (s *Server) settle(key string, e *entry, status int, body []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		e.abandoned = true
		if s.keys[key] == e {
			delete(s.keys, key)
		}
	} else {
		e.status, e.body = status, body
	}
	close(e.done)
}

// lookUp is the work: it takes Delay, then answers the order's status. It returns the
// context's error, having done nothing, when the client leaves during the delay.
func (s *Server) lookUp(ctx context.Context, id string) (int, []byte, error) {
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("look up order %s: %w", id, ctx.Err())
		case <-t.C:
		}
	}
	s.mu.Lock()
	s.stats.SideEffects++
	s.mu.Unlock()
	if o, ok := s.orders[id]; ok {
		return http.StatusOK, encode(o), nil
	}
	return http.StatusNotFound, encode(errorBody("order not found")), nil
}

func (s *Server) statsHandler(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// decodeOrderID reads {"order_id": …}. The id may be a string or, as a model sometimes writes
// it, an integer; other fields are ignored.
func decodeOrderID(r io.Reader) (string, error) {
	var req struct {
		OrderID json.RawMessage `json:"order_id"`
	}
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		return "", errors.New("the body must be a JSON object")
	}
	if len(req.OrderID) == 0 || string(req.OrderID) == "null" {
		return "", errors.New("order_id is required")
	}
	var id string
	if err := json.Unmarshal(req.OrderID, &id); err != nil {
		var n json.Number
		if json.Unmarshal(req.OrderID, &n) != nil {
			return "", errors.New("order_id must be a string")
		}
		if _, err := n.Int64(); err != nil {
			return "", errors.New("order_id must be a string")
		}
		id = n.String()
	}
	if id = strings.TrimSpace(id); id == "" {
		return "", errors.New("order_id is required")
	}
	return id, nil
}

func errorBody(msg string) map[string]string { return map[string]string{"error": msg} }

// encode marshals a value this package built; those always encode.
func encode(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"internal error"}` + "\n")
	}
	return append(data, '\n')
}

func writeJSON(w http.ResponseWriter, status int, v any) { writeRaw(w, status, encode(v)) }

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client that left cannot be told
}
