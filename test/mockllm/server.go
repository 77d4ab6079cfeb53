package mockllm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callbrain/callbrain/agent"

	"github.com/callbrain/callbrain/test/serve"
)

// maxBody bounds a request body: a long call history is a few hundred kilobytes at most.
const maxBody = 8 << 20

// Options configures a Server.
type Options struct {
	// Default is the behaviour of every request that no scripted behaviour claims.
	Default Behavior
	// Answer, when set, answers every request that no queued behaviour claims, before
	// Default: it returns the behaviour for this request, or false to leave it to Default.
	// mockllm -scripts answers from recorded call scripts this way. It must be safe for
	// concurrent use.
	Answer func(Request) (Behavior, bool)
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
	// Tools are the names of the function tools offered, in order; ToolDefs are the tools in
	// full (description and parameter schema).
	Tools    []string `json:"tools,omitempty"`
	ToolDefs []Tool   `json:"tool_defs,omitempty"`
	// ToolChoice is tool_choice: its value when it is a string ("auto", "none", "required"),
	// the compact JSON of an object; "" when absent.
	ToolChoice string `json:"tool_choice,omitempty"`
}

// clone copies r deeply, so a caller cannot change the record.
func (r Request) clone() Request {
	r.Messages = append([]Message(nil), r.Messages...)
	for i, m := range r.Messages {
		r.Messages[i].ToolCalls = append([]ToolCall(nil), m.ToolCalls...)
	}
	r.Tools = append([]string(nil), r.Tools...)
	r.ToolDefs = append([]Tool(nil), r.ToolDefs...)
	for i, t := range r.ToolDefs {
		r.ToolDefs[i].Parameters = append(json.RawMessage(nil), t.Parameters...)
	}
	return r
}

// Message is one chat message of a recorded request. Content arrays (the multimodal form)
// are recorded as their text parts joined with newlines.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Name is the message's optional name field.
	Name string `json:"name,omitempty"`
	// ToolCalls are an assistant message's tool calls, with their ids and arguments as sent.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID is the call a tool message answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
}

// Server is the mock model, an http.Handler. It is safe for concurrent use.
type Server struct {
	opts Options
	mux  *http.ServeMux
	seq  atomic.Int64
	// callPrefix makes tool call ids unique across mock instances too, since a tool server
	// may use them as idempotency keys and outlive the mock.
	callPrefix string
	callSeq    atomic.Int64

	mu    sync.Mutex
	queue []Behavior
	reqs  []Request
}

// New returns a mock model answering with opts.Default unless a scripted behaviour applies.
func New(opts Options) *Server {
	if opts.Models == nil {
		opts.Models = []string{"gpt-4o-mini", "mockllm"}
	}
	var prefix [6]byte
	_, _ = rand.Read(prefix[:]) // crypto/rand.Read never returns an error (it crashes instead)
	s := &Server{opts: opts, mux: http.NewServeMux(), callPrefix: hex.EncodeToString(prefix[:])}
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
		out[i] = r.clone()
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

// take records a request and returns the behaviour that answers it: a queued one, else
// Options.Answer's, else Options.Default.
func (s *Server) take(rec Request) Behavior {
	if b, ok := s.dequeue(rec); ok {
		return b
	}
	if s.opts.Answer != nil {
		if b, ok := s.opts.Answer(rec.clone()); ok {
			return b
		}
	}
	return s.opts.Default
}

// dequeue records a request and takes the first queued behaviour that claims it.
func (s *Server) dequeue(rec Request) (Behavior, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, rec)
	for i, b := range s.queue {
		if b.Model == "" || b.Model == rec.Model {
			s.queue = append(s.queue[:i:i], s.queue[i+1:]...)
			return b, true
		}
	}
	return Behavior{}, false
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return
	}
	rec := record(req, time.Now())
	b := s.take(rec.clone())

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

	text, calls := b.Reply, b.ToolCalls
	if text == "" && len(calls) == 0 {
		text, calls = autoAnswer(rec)
	}
	a := s.newAnswer(rec, text, calls)

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		s.stream(ctx, w, b, a, includeUsage)
		return
	}
	s.complete(ctx, w, b, a)
}

// record turns the wire request into its record.
func record(req chatRequest, now time.Time) Request {
	rec := Request{
		Time:        now,
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
		msg := Message{Role: m.Role, Content: m.text(), Name: m.Name, ToolCallID: m.ToolCallID}
		for _, c := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
		}
		rec.Messages[i] = msg
	}
	for _, t := range req.Tools {
		if t.Function == nil {
			continue // only function tools exist today
		}
		def := Tool{Name: t.Function.Name, Description: t.Function.Description}
		if p := t.Function.Parameters; len(p) > 0 && string(p) != "null" {
			def.Parameters = p
		}
		rec.Tools = append(rec.Tools, def.Name)
		rec.ToolDefs = append(rec.ToolDefs, def)
	}
	if choice, err := jsonText(req.ToolChoice); err == nil {
		rec.ToolChoice = choice
	}
	return rec
}

// newAnswer lays out what the model says: the words, then each tool call with a fresh id
// when it has none, cut at max_tokens.
func (s *Server) newAnswer(rec Request, text string, calls []ToolCall) answer {
	a := answer{
		id:      fmt.Sprintf("chatcmpl-mock%06d", s.seq.Add(1)),
		created: rec.Time.Unix(),
		model:   rec.Model,
		calls:   make([]ToolCall, len(calls)),
		finish:  "stop",
		usage:   usage{PromptTokens: promptTokens(rec.Messages)},
	}
	for _, tok := range agent.DemoTokens(text) {
		a.pieces = append(a.pieces, piece{call: -1, text: tok})
	}
	for i, c := range calls {
		if c.ID == "" {
			c.ID = fmt.Sprintf("call_%s%06d", s.callPrefix, s.callSeq.Add(1))
		}
		if c.Arguments == "" {
			c.Arguments = "{}"
		}
		a.calls[i] = c
		a.pieces = append(a.pieces, piece{call: i, open: true})
		for _, f := range fragments(c.Arguments) {
			a.pieces = append(a.pieces, piece{call: i, args: f})
		}
		a.finish = "tool_calls"
	}
	// Like a real model, stop at max_tokens and say so: the brain treats "length" specially.
	if rec.MaxTokens > 0 && len(a.pieces) > rec.MaxTokens {
		a.pieces = a.pieces[:rec.MaxTokens]
		a.finish = "length"
	}
	a.usage.CompletionTokens = len(a.pieces)
	a.usage.TotalTokens = a.usage.PromptTokens + a.usage.CompletionTokens
	return a
}

// answer is what one completion says, before pacing.
type answer struct {
	id      string
	created int64
	model   string
	pieces  []piece
	calls   []ToolCall // with their ids and arguments
	finish  string
	usage   usage
}

// piece is one streamed step of an answer, one token for pacing: a word of the text, the
// opening of a tool call, or a fragment of its arguments.
type piece struct {
	call int    // the tool call this piece belongs to; -1 for text
	text string // the word, when call is -1
	open bool   // the call's first delta: id, type and name, empty arguments
	args string // a fragment of the call's arguments
}

// delta is the piece on the wire.
func (p piece) delta(calls []ToolCall) delta {
	if p.call < 0 {
		return delta{Content: jsonString(p.text)}
	}
	tc := toolCallDelta{Index: p.call, Function: functionDelta{Arguments: p.args}}
	if p.open {
		tc.ID, tc.Type, tc.Function.Name = calls[p.call].ID, "function", calls[p.call].Name
	}
	return delta{ToolCalls: []toolCallDelta{tc}}
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

	// An answer in words opens with the role and empty content at once; one that is only
	// tool calls carries the role on the first call's delta, as OpenAI streams them.
	callsOnly := len(a.pieces) > 0 && a.pieces[0].call >= 0
	if callsOnly {
		if rc.Flush() != nil {
			return // the client went away
		}
	} else if send(withChoice(delta{Role: "assistant", Content: jsonString("")}, nil)) != nil {
		return
	}
	err := play(ctx, b, len(a.pieces), func(i int) error {
		d := a.pieces[i].delta(a.calls)
		if i == 0 && callsOnly {
			d.Role, d.Content, d.Refusal = "assistant", jsonNull, jsonNull
		}
		return send(withChoice(d, nil))
	})
	if errors.Is(err, errCut) {
		abort(w)
		return
	}
	if errors.Is(err, errInStream) {
		// OpenRouter's mid-stream error (openrouter.ai/docs/api-reference/streaming).
		data := fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"error":{"code":"server_error","message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}`,
			a.id, a.created, a.model)
		if _, err := fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", data); err == nil {
			_ = rc.Flush()
		}
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
	args := make([]strings.Builder, len(a.calls))
	opened := 0 // calls whose opening delta was played, as a streaming client would have them
	err := play(ctx, b, len(a.pieces), func(i int) error {
		switch p := a.pieces[i]; {
		case p.call < 0:
			text.WriteString(p.text)
		case p.open:
			opened = p.call + 1
		default:
			args[p.call].WriteString(p.args)
		}
		return nil
	})
	if errors.Is(err, errCut) || errors.Is(err, errInStream) {
		abort(w)
		return
	}
	if err != nil {
		return
	}
	msg := completionMessage{Role: "assistant", Content: jsonString(text.String()), Refusal: jsonNull}
	if opened > 0 && text.Len() == 0 {
		msg.Content = jsonNull
	}
	for i := range opened {
		var tc wireToolCall
		tc.ID, tc.Type = a.calls[i].ID, "function"
		tc.Function.Name, tc.Function.Arguments = a.calls[i].Name, args[i].String()
		msg.ToolCalls = append(msg.ToolCalls, tc)
	}
	serve.JSON(w, http.StatusOK, completion{
		ID:                a.id,
		Object:            "chat.completion",
		Created:           a.created,
		Model:             a.model,
		SystemFingerprint: "fp_mockllm",
		Choices:           []completionChoice{{Message: msg, Logprobs: jsonNull, FinishReason: a.finish}},
		Usage:             a.usage,
	})
}

// errCut is play's signal that the behaviour breaks the connection here; errInStream that it
// reports an error inside the stream.
var (
	errCut      = errors.New("cut")
	errInStream = errors.New("error in stream")
)

// play paces n tokens as b says and hands the index of each to emit. It returns errCut where
// b cuts the connection, the context's error when the client goes away, or emit's error.
func play(ctx context.Context, b Behavior, n int, emit func(int) error) error {
	for i := 0; i <= n; i++ {
		if b.Stall > 0 && i == b.StallAfter {
			if err := serve.Wait(ctx, b.Stall); err != nil {
				return err
			}
		}
		if b.CutAfter > 0 && i == b.CutAfter {
			return errCut
		}
		if b.ErrorAfter > 0 && i == b.ErrorAfter {
			return errInStream
		}
		if i == n {
			return nil
		}
		d := b.TokenDelay
		if i == 0 {
			d = b.TTFT
		}
		if err := serve.Wait(ctx, d); err != nil {
			return err
		}
		if err := emit(i); err != nil {
			return err
		}
	}
	return nil
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
	serve.JSON(w, http.StatusOK, list)
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	var bs []Behavior
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&bs); err != nil {
		serve.JSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.Push(bs...)
	serve.JSON(w, http.StatusOK, map[string]int{"queued": len(bs)})
}

func (s *Server) requests(w http.ResponseWriter, _ *http.Request) {
	serve.JSON(w, http.StatusOK, s.Requests())
}

func (s *Server) reset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	serve.JSON(w, http.StatusOK, struct{}{})
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
	serve.JSON(w, status, apiError{Error: apiErrorBody{Message: msg, Type: typ, Param: jsonNull, Code: code}})
}

// demoReply is the demo model's answer to these messages.
func demoReply(msgs []Message) string {
	out := make([]agent.Message, len(msgs))
	for i, m := range msgs {
		out[i] = agent.Message{Role: m.Role, Text: m.Content}
	}
	return agent.DemoReply(out)
}

// promptTokens estimates the prompt's size with the demo tokenizer, for the usage figures.
func promptTokens(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len(agent.DemoTokens(m.Content)) + 4 // a few tokens of framing per message, as OpenAI counts
	}
	return n
}
