package mockllm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Behavior is how the mock answers one request: what it says or which tools it calls, how fast,
// and how it fails. The zero value answers at once with the default answer (the demo reply, or
// the tool rules of the package documentation when the request offers tools).
//
// In JSON (the /mock/script control API) the keys are snake_case and the durations are
// milliseconds: {"model","reply","tool_calls","ttft_ms","token_delay_ms","status","stall_after",
// "stall_ms","cut_after","error_after","hang"}, a tool call being {"name","arguments"} (see ToolCall).
//
// Pacing counts tokens: the words of the reply, then for each tool call its opening delta and
// each fragment of its arguments.
type Behavior struct {
	// Model makes a scripted behaviour apply only to requests for this model; "" matches any.
	Model string
	// Reply replaces the default answer. With ToolCalls it is said first, as some models say a
	// short sentence before calling a tool.
	Reply string
	// ToolCalls, when set, are the answer: the model calls these tools (after Reply, if any)
	// and finishes with "tool_calls", instead of answering in words.
	ToolCalls []ToolCall
	// TTFT is the delay before the first content token. In a stream the headers and the
	// role chunk go out at once, as OpenAI does, so the client's stream opens before it.
	TTFT time.Duration
	// TokenDelay is the delay between two content tokens.
	TokenDelay time.Duration
	// Status, when neither 0 nor 200, is answered at once with an OpenAI-style error body.
	Status int
	// StallAfter and Stall: once StallAfter tokens are out, pause for Stall (Stall > 0 turns
	// it on, so StallAfter 0 stalls before the first token; StallAfter equal to the token
	// count stalls before the final chunk).
	StallAfter int
	Stall      time.Duration
	// CutAfter > 0: once CutAfter tokens are out, the connection is closed abruptly, so the
	// client sees a broken stream (never a clean end). An answer shorter than CutAfter tokens
	// ends normally; CutAfter equal to the token count cuts before the final chunk.
	CutAfter int
	// ErrorAfter > 0: once ErrorAfter tokens are out, the stream reports a provider error
	// inside it, as OpenRouter does (an "error" object beside a choice with finish_reason
	// "error"), then [DONE]: still HTTP 200, a clean end of the connection. A non-streamed
	// answer breaks its connection instead.
	ErrorAfter int
	// Hang: never answer; the handler returns when the client goes away.
	Hang bool
}

// behaviorJSON is Behavior on the wire.
type behaviorJSON struct {
	Model        string     `json:"model,omitempty"`
	Reply        string     `json:"reply,omitempty"`
	ToolCalls    []ToolCall `json:"tool_calls,omitempty"`
	TTFTMs       float64    `json:"ttft_ms,omitempty"`
	TokenDelayMs float64    `json:"token_delay_ms,omitempty"`
	Status       int        `json:"status,omitempty"`
	StallAfter   int        `json:"stall_after,omitempty"`
	StallMs      float64    `json:"stall_ms,omitempty"`
	CutAfter     int        `json:"cut_after,omitempty"`
	ErrorAfter   int        `json:"error_after,omitempty"`
	Hang         bool       `json:"hang,omitempty"`
}

// MarshalJSON writes the snake_case form with durations in milliseconds.
func (b Behavior) MarshalJSON() ([]byte, error) {
	return json.Marshal(behaviorJSON{
		Model:        b.Model,
		Reply:        b.Reply,
		ToolCalls:    b.ToolCalls,
		TTFTMs:       ms(b.TTFT),
		TokenDelayMs: ms(b.TokenDelay),
		Status:       b.Status,
		StallAfter:   b.StallAfter,
		StallMs:      ms(b.Stall),
		CutAfter:     b.CutAfter,
		ErrorAfter:   b.ErrorAfter,
		Hang:         b.Hang,
	})
}

// UnmarshalJSON reads the snake_case form. Unknown keys are rejected, so a typo such as
// "ttft" for "ttft_ms" fails loudly instead of being ignored, and so are negative values.
func (b *Behavior) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w behaviorJSON
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("decode behavior: %w", err)
	}
	nb := Behavior{
		Model:      w.Model,
		Reply:      w.Reply,
		ToolCalls:  w.ToolCalls,
		TTFT:       fromMs(w.TTFTMs),
		TokenDelay: fromMs(w.TokenDelayMs),
		Status:     w.Status,
		StallAfter: w.StallAfter,
		Stall:      fromMs(w.StallMs),
		CutAfter:   w.CutAfter,
		ErrorAfter: w.ErrorAfter,
		Hang:       w.Hang,
	}
	if err := nb.validate(); err != nil {
		return err
	}
	*b = nb
	return nil
}

func (b Behavior) validate() error {
	switch {
	case b.TTFT < 0, b.TokenDelay < 0, b.Stall < 0:
		return errors.New("behavior: negative duration")
	case b.StallAfter < 0, b.CutAfter < 0, b.ErrorAfter < 0:
		return errors.New("behavior: negative token count")
	case b.Status != 0 && (b.Status < 100 || b.Status > 599):
		return fmt.Errorf("behavior: status %d is not an HTTP status", b.Status)
	}
	for i, c := range b.ToolCalls {
		if c.Name == "" {
			return fmt.Errorf("behavior: tool call %d has no name", i)
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMs(v float64) time.Duration {
	limit := math.MaxInt64 / float64(time.Millisecond)
	switch {
	case v > limit:
		return math.MaxInt64
	case v < -limit:
		return -math.MaxInt64
	}
	return time.Duration(v * float64(time.Millisecond))
}
