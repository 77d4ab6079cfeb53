// Command floor is the reference floor of issue 10 §2: a bare Saperly webhook-mode server that
// does only a message turn's hot path, written plainly and without features, so the brain's
// CPU per message turn can be compared with what the machine can do.
//
// It uses net/http, not Echo: the floor is what the machine can do, not what our stack does.
// Per delivery it reads the body (capped at 1 MiB), verifies the v1 HMAC signature and the
// timestamp window (PROTOCOL §1.2; 401 {"error":"<reason>"} on a bad one) and then:
//
//   - message: ONE Redis pipeline before the model (SET NX EX of the delivery id, 409 on a
//     repeat; LRANGE of the call's last historyLimit entries), a streamed chat completion with
//     go-openai, phrases cut at sentence and clause punctuation and written as NDJSON speak
//     lines, each flushed; then ONE pipeline (RPUSH of the caller's and the answer's entries,
//     LTRIM, EXPIRE). Two round trips and five commands per message turn.
//   - every other event (and /status): ONE pipeline (the replay check and an HSET of the call
//     record with its EXPIRE), then 200 {}.
//
// No holding phrases, budgets, fallback model, leases, retries by event_id, tools, recording,
// metrics or per-delivery logs: none of the features. Errors are logged to stderr as plain lines.
//
// It reads the brain's environment variables: BRAIN_ADDR (127.0.0.1:8080), REDIS_URL
// (required), OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL (gpt-4o-mini),
// SAPERLY_WEBHOOK_SECRET and SAPERLY_WEBHOOK_SECRET_NEXT (unset: the development secret, on a
// loopback address only). Once it listens it prints {"level":"info","msg":"listening","addr":…},
// as the brain does. test/bench's TestLoad (BENCH_LOAD_TARGET=floor) runs it.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sashabaranov/go-openai"
)

const (
	// devSecret is transport.DevSecret, copied so the floor links none of the brain's packages.
	devSecret    = "callbrain-dev-secret-not-for-production"
	maxBody      = 1 << 20
	skew         = 300 * time.Second // PROTOCOL §1.2
	replayTTL    = 5 * time.Minute   // PROTOCOL §1.4
	historyLimit = 40                // the brain's BRAIN_HISTORY_LIMIT default
	historyTTL   = 24 * time.Hour
	maxTokens    = 450 // the brain's BRAIN_MAX_TOKENS default
	system       = "You are a friendly phone receptionist. Answer in one or two short spoken sentences."
	apology      = "Sorry, I'm having trouble right now. Could you say that again?"
)

type config struct {
	addr, redisURL, modelURL, modelKey, model string
	secrets                                   []string
}

func configFromEnv() (config, error) {
	c := config{
		addr: or(os.Getenv("BRAIN_ADDR"), "127.0.0.1:8080"), redisURL: os.Getenv("REDIS_URL"),
		modelURL: os.Getenv("OPENAI_BASE_URL"), modelKey: os.Getenv("OPENAI_API_KEY"),
		model:   or(os.Getenv("OPENAI_MODEL"), "gpt-4o-mini"),
		secrets: []string{os.Getenv("SAPERLY_WEBHOOK_SECRET"), os.Getenv("SAPERLY_WEBHOOK_SECRET_NEXT")},
	}
	if c.redisURL == "" {
		return c, errors.New("REDIS_URL is required")
	}
	if c.secrets[0] == "" {
		host, _, _ := net.SplitHostPort(c.addr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return c, errors.New("SAPERLY_WEBHOOK_SECRET is required off loopback")
		}
		c.secrets[0] = devSecret
	}
	return c, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// server is the floor's handler.
type server struct {
	rdb     *redis.Client
	llm     *openai.Client
	model   string
	secrets []string
	now     func() time.Time
}

func newServer(c config, rdb *redis.Client) *server {
	oc := openai.DefaultConfig(c.modelKey)
	if c.modelURL != "" {
		oc.BaseURL = c.modelURL
	}
	// Many concurrent streams to one host: keep their connections (the default keeps 2).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 512
	oc.HTTPClient = &http.Client{Transport: tr}
	return &server{rdb: rdb, llm: openai.NewClientWithConfig(oc), model: c.model, secrets: c.secrets, now: time.Now}
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", s.deliver)
	mux.HandleFunc("POST /status", s.deliver)
	return mux
}

type event struct {
	Event      string `json:"event"`
	CallID     string `json:"call_id"`
	Text       string `json:"text"`
	Transcript string `json:"transcript"`
	Message    string `json:"message"`
}

func (s *server) deliver(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, `{"error":"body_too_large"}`)
		return
	}
	if reason := verify(r.Header, body, s.secrets, s.now()); reason != "" {
		writeJSON(w, http.StatusUnauthorized, `{"error":"`+reason+`"}`)
		return
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		writeJSON(w, http.StatusBadRequest, `{"error":"malformed_body"}`)
		return
	}
	seen := "floor:seen:" + r.Header.Get("X-Saperly-Delivery-Id")
	if ev.Event != "message" || r.URL.Path != "/webhook" {
		s.other(w, r, seen, ev)
		return
	}
	if ev.CallID == "" {
		writeJSON(w, http.StatusBadRequest, `{"error":"missing_call_id"}`)
		return
	}
	s.message(w, r, seen, ev)
}

// other answers every event but a message: the replay check and the call record, one round trip.
func (s *server) other(w http.ResponseWriter, r *http.Request, seen string, ev event) {
	var fresh *redis.BoolCmd
	_, err := s.rdb.Pipelined(r.Context(), func(p redis.Pipeliner) error {
		fresh = p.SetNX(r.Context(), seen, 1, replayTTL)
		if ev.CallID != "" {
			key := "floor:call:" + ev.CallID
			p.HSet(r.Context(), key, "last_event", ev.Event, "updated_ms", s.now().UnixMilli())
			p.Expire(r.Context(), key, historyTTL)
		}
		return nil
	})
	switch {
	case err != nil:
		log.Printf("%s %s: redis: %v", ev.Event, ev.CallID, err)
		writeJSON(w, http.StatusServiceUnavailable, `{"error":"store_unavailable"}`)
	case !fresh.Val():
		writeJSON(w, http.StatusConflict, `{"error":"replayed_delivery"}`)
	default:
		writeJSON(w, http.StatusOK, `{}`)
	}
}

// message answers a caller's words: one pipeline, the model's stream cut into phrases, one pipeline.
func (s *server) message(w http.ResponseWriter, r *http.Request, seen string, ev event) {
	ctx := r.Context()
	words := or(ev.Text, or(ev.Transcript, ev.Message))
	hist := "floor:history:" + ev.CallID
	var fresh *redis.BoolCmd
	var past *redis.StringSliceCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fresh = p.SetNX(ctx, seen, 1, replayTTL)
		past = p.LRange(ctx, hist, -historyLimit, -1)
		return nil
	}); err != nil {
		log.Printf("message %s: redis: %v", ev.CallID, err)
		writeJSON(w, http.StatusServiceUnavailable, `{"error":"store_unavailable"}`)
		return
	}
	if !fresh.Val() {
		writeJSON(w, http.StatusConflict, `{"error":"replayed_delivery"}`)
		return
	}

	msgs := make([]openai.ChatCompletionMessage, 0, len(past.Val())+2)
	msgs = append(msgs, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleSystem, Content: system})
	for _, e := range past.Val() {
		role, text, _ := strings.Cut(e, ":") // entries are "user:…" or "assistant:…"
		msgs = append(msgs, openai.ChatCompletionMessage{Role: role, Content: text})
	}
	msgs = append(msgs, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: words})

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flush := http.NewResponseController(w)
	var said strings.Builder
	speak := func(phrase string) error {
		line, _ := json.Marshal(speakLine{Type: "speak", Text: phrase}) // a struct of strings always encodes
		if said.Len() > 0 {
			said.WriteByte(' ')
		}
		said.WriteString(phrase)
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		return flush.Flush()
	}
	if err := s.answer(ctx, msgs, speak); err != nil {
		if ctx.Err() != nil {
			return // the caller hung up or talked over the answer
		}
		log.Printf("message %s: %v", ev.CallID, err)
		if said.Len() == 0 {
			_ = speak(apology) // the connection may be gone: nothing more to do
		}
	}
	if said.Len() == 0 {
		return
	}
	// The history is written even when the caller is gone: what was said was said.
	ctx = context.WithoutCancel(ctx)
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, hist, "user:"+words, "assistant:"+said.String())
		p.LTrim(ctx, hist, -historyLimit, -1)
		p.Expire(ctx, hist, historyTTL)
		return nil
	}); err != nil {
		log.Printf("message %s: save history: %v", ev.CallID, err)
	}
}

type speakLine struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// answer streams the model's answer and hands each phrase to speak as soon as it is complete.
func (s *server) answer(ctx context.Context, msgs []openai.ChatCompletionMessage, speak func(string) error) error {
	stream, err := s.llm.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Model: s.model, Messages: msgs, MaxTokens: maxTokens, Stream: true,
	})
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	defer stream.Close()
	var buf []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("model stream: %w", err)
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		buf = append(buf, chunk.Choices[0].Delta.Content...)
		for {
			n := cut(buf)
			if n == 0 {
				break
			}
			if err := speak(strings.TrimSpace(string(buf[:n]))); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			buf = buf[n:]
		}
	}
	if rest := strings.TrimSpace(string(buf)); rest != "" {
		if err := speak(rest); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// minClause is the shortest phrase cut at a comma, semicolon or colon, so a line is never a
// lone "Sure,".
const minClause = 24

// cut returns the length of the first complete phrase in buf, or 0: text up to sentence
// punctuation (. ! ?) or, once it is minClause bytes long, clause punctuation (, ; :),
// followed by a space.
func cut(buf []byte) int {
	for i := 0; i+1 < len(buf); i++ {
		if buf[i+1] != ' ' {
			continue
		}
		switch buf[i] {
		case '.', '!', '?':
			return i + 1
		case ',', ';', ':':
			if i+1 >= minClause {
				return i + 1
			}
		}
	}
	return 0
}

// verify checks a delivery's signature (PROTOCOL §1.2) and returns the failure reason, or "".
// The MAC is checked before the clock.
func verify(h http.Header, body []byte, secrets []string, now time.Time) string {
	ts, id, sig := h.Get("X-Saperly-Timestamp"), h.Get("X-Saperly-Delivery-Id"), h.Get("X-Saperly-Signature")
	switch {
	case ts == "":
		return "missing_timestamp"
	case id == "":
		return "missing_delivery_id"
	case sig == "":
		return "missing_signature"
	}
	sec, err := strconv.ParseUint(ts, 10, 63)
	if err != nil {
		return "malformed_timestamp"
	}
	version, digest, ok := strings.Cut(sig, "=")
	if !ok {
		return "malformed_signature"
	}
	if version != "v1" {
		return "unknown_version"
	}
	got, err := hex.DecodeString(digest)
	if err != nil || len(got) != sha256.Size || strings.ToLower(digest) != digest {
		return "malformed_signature"
	}
	matched := false
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts + "." + id + "."))
		m.Write(body)
		if hmac.Equal(got, m.Sum(nil)) {
			matched = true
		}
	}
	if !matched {
		return "signature_mismatch"
	}
	if d := now.Sub(time.Unix(int64(sec), 0)); d > skew || d < -skew {
		return "stale_timestamp"
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) // the sender may be gone
}

func main() {
	log.SetFlags(0)
	if err := run(); err != nil {
		log.Fatalf("floor: %v", err)
	}
}

func run() error {
	c, err := configFromEnv()
	if err != nil {
		return err
	}
	opt, err := redis.ParseURL(c.redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.addr, err)
	}
	srv := &http.Server{Handler: newServer(c, rdb).routes(), ReadHeaderTimeout: 10 * time.Second}
	ready, _ := json.Marshal(map[string]string{"level": "info", "msg": "listening", "addr": ln.Addr().String()})
	fmt.Println(string(ready))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
