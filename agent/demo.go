package agent

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
)

// DemoReply is the deterministic answer of the offline demo model and of cmd/mockllm: a small
// receptionist that reacts to a few keywords in the caller's last words, so a fresh checkout
// holds a sensible conversation with no model account.
func DemoReply(msgs []Message) string {
	last := ""
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			last = msgs[i].Text
			break
		}
	}
	l := strings.ToLower(last)
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(l, w) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.TrimSpace(l) == "":
		return "Sorry, I didn't catch that. Could you say it again?"
	case has("bye", "thank"):
		return "You're welcome. Thanks for calling, and have a great day!"
	case has("monday", "tuesday", "wednesday", "thursday", "friday"):
		return "Perfect, you're booked. You'll get a text confirmation in a minute. Is there anything else I can do for you?"
	case has("book", "appointment", "cleaning", "schedule"):
		return "Sure, I can help you book that. We have openings on Tuesday at 3:30 p.m. and Wednesday at 10 a.m. Which works better for you?"
	case has("hour", "open", "close"):
		return "We're open Monday to Friday from 9 a.m. to 5 p.m., and on Saturdays until noon. Would you like to book a visit?"
	case has("price", "cost", "how much"):
		return "A standard cleaning is $89.50, and the first check-up is free. Shall I find you a time?"
	case has("hello", "hi ", "hey"):
		return "Hello, thanks for calling. How can I help you today?"
	default:
		return fmt.Sprintf("I heard you say: %s. Could you tell me a little more about what you need?",
			strings.TrimRight(strings.TrimSpace(last), ".!?"))
	}
}

// DemoTokens splits text the way a model streams it: words with their leading space, and
// punctuation on its own.
func DemoTokens(text string) []string {
	var toks []string
	start := 0
	for i, r := range text {
		if i > start && (r == ' ' || (unicode.IsPunct(r) && r != '\'' && r != '.' && r != ':' && r != '$')) {
			toks = append(toks, text[start:i])
			start = i
		}
	}
	if start < len(text) {
		toks = append(toks, text[start:])
	}
	return toks
}

// DemoLLM is the built-in offline model: it streams DemoReply token by token.
type DemoLLM struct {
	// TokenDelay is the pause before each token, so the demo sounds like a real stream.
	TokenDelay time.Duration
}

var _ LLM = (*DemoLLM)(nil)

// Stream implements LLM.
func (d *DemoLLM) Stream(ctx context.Context, req Request) (TokenStream, error) {
	return &demoStream{ctx: ctx, delay: d.TokenDelay, toks: DemoTokens(DemoReply(req.Messages))}, nil
}

type demoStream struct {
	ctx   context.Context
	delay time.Duration
	toks  []string
}

func (s *demoStream) Recv() (string, error) {
	if len(s.toks) == 0 {
		return "", io.EOF
	}
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-s.ctx.Done():
			return "", context.Cause(s.ctx)
		case <-t.C:
		}
	} else if err := s.ctx.Err(); err != nil {
		return "", context.Cause(s.ctx)
	}
	tok := s.toks[0]
	s.toks = s.toks[1:]
	return tok, nil
}

// ToolCalls implements TokenStream: the demo model answers in words only.
func (s *demoStream) ToolCalls() []ToolCall { return nil }

func (s *demoStream) Close() error { return nil }
