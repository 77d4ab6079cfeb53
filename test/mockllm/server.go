// Package mockllm is an OpenAI-compatible stand-in model for tests, end-to-end runs and
// trying callbrain without a model account. By default it answers like the brain's offline
// demo model (agent.DemoReply, streamed token by token as agent.DemoTokens splits it); a
// Behavior adds latency, stalls, error statuses, broken streams or a hang, per request from a
// FIFO script or for every request by default. Every request is recorded for inspection.
//
// It serves POST /v1/chat/completions (streamed as server-sent events exactly as OpenAI does,
// or as one JSON completion), GET /v1/models, and a control API for out-of-process use:
// POST /mock/script, GET /mock/requests, POST /mock/reset. Any bearer key is accepted.
//
// It imports agent (for the demo answer) and nothing else of callbrain, and never go-openai:
// the wire format is written by hand, and the tests check it with the real go-openai client.
package mockllm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callbrain/callbrain/agent"
)

// maxBody bounds a request body: a long call history is a few hundred kilobytes at most.
const maxBody = 8 << 20

// Options configures a Server.
type Options struct {
	// Default is the behaviour of every request that no scripted behaviour claims.
	Default Behavior
	// Models are listed by GET /v1/models; nil lists "gpt-4o-mini" (the brain's default
	// model) and "mockllm". Requests for any model are answered whether listed or not.
	Models []string
}

// Request is one chat completion request as the mock received it.
type Request struct {
	Time   time.Time `json:"time"`
	Model  string    `json:"model"`
	Stream bool      `json:"stream"`
	// MaxTokens is max_tokens, or max_completion_tokens when only that was sent; 0 if neither.
	MaxTokens   int       `json:"max_tokens"`
	Temperature float32   `json:"temperature"`
	Messages    []Message `json:"messages"`
}

// Message is one chat message of a recorded request. Content arrays (the multimodal form)
// are recorded as their text parts joined with newlines.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Server is the mock model, an http.Handler. It is safe for concurrent use.
type Server struct {
	opts Options
	mux  *http.ServeMux
	seq  atomic.Int64

	mu    sync.Mutex
	queue []Behavior
	reqs  []Request
}

// New returns a mock model answering with opts.Default unless a scripted behaviour applies.
func New(opts Options) *Server {
	if opts.Models == nil {
		opts.Models = []string{"gpt-4o-mini", "mockllm"}
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/chat/completions", s.chat)
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("POST /mock/script", s.script)
	s.mux.HandleFunc("GET /mock/requests", s.requests)
	s.mux.HandleFunc("POST /mock/reset", s.reset)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Push appends behaviours to the script. Each request takes the first queued behaviour whose
// Model is "" or equals the request's model, and falls back to Options.Default when none does.
func (s *Server) Push(b ...Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, b...)
}

// Requests returns a copy of every chat completion request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		r.Messages = append([]Message(nil), r.Messages...)
		out[i] = r
	}
	return out
}

// Reset empties the script and the record of requests. Options.Default stays.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = nil
	s.reqs = nil
}

// take records a request and returns the behaviour that answers it.
func (s *Server) take(rec Request) Behavior {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, rec)
	for i, b := range s.queue {
		if b.Model == "" || b.Model == rec.Model {
			s.queue = append(s.queue[:i:i], s.queue[i+1:]...)
			return b
		}
	}
	return s.opts.Default
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return
	}
	rec := Request{
		Time:        time.Now(),
		Model:       req.Model,
		Stream:      req.Stream,
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
		Messages:    make([]Message, len(req.Messages)),
	}
	if rec.MaxTokens == 0 {
		rec.MaxTokens = req.MaxCompletionTokens
	}
	for i, m := range req.Messages {
		rec.Messages[i] = Message{Role: m.Role, Content: m.text()}
	}
	b := s.take(rec)

	ctx := r.Context()
	switch {
	case b.Hang:
		<-ctx.Done()
		return
	case b.Status != 0 && b.Status != http.StatusOK:
		writeError(w, b.Status, fmt.Sprintf("mockllm: scripted status %d", b.Status))
		return
	case req.Model == "":
		writeError(w, http.StatusBadRequest, "you must provide a model parameter")
		return
	}

	text := b.Reply
	if text == "" {
		text = agent.DemoReply(demoMessages(rec.Messages))
	}
	a := answer{
		id:      fmt.Sprintf("chatcmpl-mock%06d", s.seq.Add(1)),
		created: rec.Time.Unix(),
		model:   req.Model,
		tokens:  agent.DemoTokens(text),
		finish:  "stop",
		usage:   usage{PromptTokens: promptTokens(rec.Messages)},
	}
	// Like a real model, stop at max_tokens and say so: the brain treats "length" specially.
	if rec.MaxTokens > 0 && len(a.tokens) > rec.MaxTokens {
		a.tokens = a.tokens[:rec.MaxTokens]
		a.finish = "length"
	}
	a.usage.CompletionTokens = len(a.tokens)
	a.usage.TotalTokens = a.usage.PromptTokens + a.usage.CompletionTokens

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		s.stream(ctx, w, b, a, includeUsage)
		return
	}
	s.complete(ctx, w, b, a)
}

// answer is what one completion says, before pacing.
type answer struct {
	id      string
	created int64
	model   string
	tokens  []string
	finish  string
	usage   usage
}

func (s *Server) stream(ctx context.Context, w http.ResponseWriter, b Behavior, a answer, includeUsage bool) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)

	send := func(c chunk) error {
		data, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode chunk: %w", err)
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return fmt.Errorf("write chunk: %w", err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("flush chunk: %w", err)
		}
		return nil
	}
	base := chunk{ID: a.id, Object: "chat.completion.chunk", Created: a.created, Model: a.model, SystemFingerprint: "fp_mockllm"}
	withChoice := func(d delta, finish *string) chunk {
		c := base
		c.Choices = []chunkChoice{{Delta: d, Logprobs: jsonNull, FinishReason: finish}}
		return c
	}

	empty := ""
	if send(withChoice(delta{Role: "assistant", Content: &empty}, nil)) != nil {
		return // the client went away
	}
	err := play(ctx, b, a.tokens, func(tok string) error {
		return send(withChoice(delta{Content: &tok}, nil))
	})
	if errors.Is(err, errCut) {
		abort(w)
		return
	}
	if err != nil {
		return
	}
	if send(withChoice(delta{}, &a.finish)) != nil {
		return
	}
	if includeUsage {
		c := base
		c.Choices = []chunkChoice{}
		c.Usage = &a.usage
		if send(c) != nil {
			return
		}
	}
	if _, err := fmt.Fprint(w, "data: [DONE]\n\n"); err != nil {
		return
	}
	_ = rc.Flush() // the handler ends here either way
}

func (s *Server) complete(ctx context.Context, w http.ResponseWriter, b Behavior, a answer) {
	var text strings.Builder
	err := play(ctx, b, a.tokens, func(tok string) error {
		text.WriteString(tok)
		return nil
	})
	if errors.Is(err, errCut) {
		abort(w)
		return
	}
	if err != nil {
		return
	}
	writeJSON(w, http.StatusOK, completion{
		ID:                a.id,
		Object:            "chat.completion",
		Created:           a.created,
		Model:             a.model,
		SystemFingerprint: "fp_mockllm",
		Choices: []completionChoice{{
			Message:      completionMessage{Role: "assistant", Content: text.String(), Refusal: jsonNull},
			Logprobs:     jsonNull,
			FinishReason: a.finish,
		}},
		Usage: a.usage,
	})
}

// errCut is play's signal that the behaviour breaks the connection here.
var errCut = errors.New("cut")

// play paces tokens as b says and hands each to emit. It returns errCut where b cuts the
// connection, the context's error when the client goes away, or emit's error.
func play(ctx context.Context, b Behavior, tokens []string, emit func(string) error) error {
	for i := 0; i <= len(tokens); i++ {
		if b.Stall > 0 && i == b.StallAfter {
			if err := wait(ctx, b.Stall); err != nil {
				return err
			}
		}
		if b.CutAfter > 0 && i == b.CutAfter {
			return errCut
		}
		if i == len(tokens) {
			return nil
		}
		d := b.TokenDelay
		if i == 0 {
			d = b.TTFT
		}
		if err := wait(ctx, d); err != nil {
			return err
		}
		if err := emit(tokens[i]); err != nil {
			return err
		}
	}
	return nil
}

// wait pauses for d, or less if ctx ends first. It leaves no timer behind.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// abort closes the connection under the response without ending it properly, so the client
// sees a broken stream (an unexpected EOF inside the chunked body, or no response at all)
// rather than a clean end.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot be hijacked; this is net/http's documented way to abort a response.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close() // closing is the point; there is nothing left to report to
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	list := modelList{Object: "list", Data: make([]model, len(s.opts.Models))}
	for i, id := range s.opts.Models {
		list.Data[i] = model{ID: id, Object: "model", Created: 1700000000, OwnedBy: "mockllm"}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	var bs []Behavior
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&bs); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.Push(bs...)
	writeJSON(w, http.StatusOK, map[string]int{"queued": len(bs)})
}

func (s *Server) requests(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Requests())
}

func (s *Server) reset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	writeJSON(w, http.StatusOK, struct{}{})
}

// writeError answers with an OpenAI-style error body, which go-openai turns into an
// *openai.APIError carrying the status.
func writeError(w http.ResponseWriter, status int, msg string) {
	typ, code := "invalid_request_error", jsonNull
	switch {
	case status == http.StatusUnauthorized:
		code = json.RawMessage(`"invalid_api_key"`)
	case status == http.StatusTooManyRequests:
		typ, code = "requests", json.RawMessage(`"rate_limit_exceeded"`)
	case status >= 500:
		typ = "server_error"
	}
	writeJSON(w, status, apiError{Error: apiErrorBody{Message: msg, Type: typ, Param: jsonNull, Code: code}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n')) // a client that left cannot be told
}

func demoMessages(msgs []Message) []agent.Message {
	out := make([]agent.Message, len(msgs))
	for i, m := range msgs {
		out[i] = agent.Message{Role: m.Role, Text: m.Content}
	}
	return out
}

// promptTokens estimates the prompt's size with the demo tokenizer, for the usage figures.
func promptTokens(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len(agent.DemoTokens(m.Content)) + 4 // a few tokens of framing per message, as OpenAI counts
	}
	return n
}
