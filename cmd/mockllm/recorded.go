package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/mockllm"
)

// endCall is the brain's built-in tool that hangs up; the model says the goodbye before it.
const endCall = "end_call"

// recorded answers each request with the answer recorded for the caller's words in a set of
// call scripts (mockllm -scripts), at the recorded pace:
//
//   - words only: the words (the lines without holding phrases), paced so the first and last
//     lines complete when they did;
//   - with tool calls: first the calls, then, once the tool results are back, the words;
//   - with end_call only: the goodbye words and the call together, as a model does.
//
// Words nobody recorded are left to the default behaviour (the demo receptionist and the
// tool rules, or -reply), and named on log, once each.
func recorded(replies *callscript.Replies, log io.Writer) func(mockllm.Request) (mockllm.Behavior, bool) {
	var mu sync.Mutex
	missed := map[string]bool{}
	return func(req mockllm.Request) (mockllm.Behavior, bool) {
		var said []string
		lastUser := -1
		for i, m := range req.Messages {
			if m.Role == "user" {
				said = append(said, m.Content)
				lastUser = i
			}
		}
		a, ok := replies.Find(said)
		if !ok {
			if len(said) > 0 {
				last := said[len(said)-1]
				mu.Lock()
				if !missed[last] {
					missed[last] = true
					fmt.Fprintf(log, "mockllm: no recorded answer for %q: answering with the default behaviour\n", last)
				}
				mu.Unlock()
			}
			return mockllm.Behavior{}, false
		}
		followUp := false // the tool results are back
		for _, m := range req.Messages[lastUser+1:] {
			if m.Role == "tool" {
				followUp = true
			}
		}
		ttft, per := a.Pace()
		words := a.Words()
		var calls []mockllm.ToolCall
		onlyEndCall := true
		for _, c := range a.Tools {
			calls = append(calls, mockllm.ToolCall{Name: c.Name, Arguments: c.Args})
			onlyEndCall = onlyEndCall && c.Name == endCall
		}
		switch {
		case len(calls) == 0:
			return mockllm.Behavior{Reply: words, TTFT: ttft, TokenDelay: per}, true
		case onlyEndCall && followUp:
			// Nothing more after the goodbye: the default reads no sentence for end_call.
			return mockllm.Behavior{}, false
		case onlyEndCall:
			return mockllm.Behavior{Reply: words, ToolCalls: calls, TTFT: ttft, TokenDelay: per}, true
		case followUp:
			return mockllm.Behavior{Reply: words, TokenDelay: per}, true
		default:
			return mockllm.Behavior{ToolCalls: calls}, true
		}
	}
}
