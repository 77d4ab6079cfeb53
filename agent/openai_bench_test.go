package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/callbrain/callbrain/agent"
)

// BenchmarkOpenAIStream reads one streamed answer of 40 content chunks (OpenAI's chunk shape,
// with the role chunk, the finish chunk and [DONE]) from loopback HTTP through the real
// go-openai client: the adapter's cost per answer, decode included. docs/performance.md
// compares it before and after the stream is decoded into the brain's own chunk type.
func BenchmarkOpenAIStream(b *testing.B) {
	var body strings.Builder
	body.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	for i := range 40 {
		fmt.Fprintf(&body, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" word%d"},"logprobs":null,"finish_reason":null}]}`+"\n\n", i)
	}
	body.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n")
	body.WriteString("data: [DONE]\n\n")
	payload := body.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, payload)
	}))
	defer srv.Close()
	llm := agent.NewOpenAI(srv.URL+"/v1", "k")
	req := agent.Request{Model: "m", Messages: []agent.Message{{Role: "user", Text: "Hi"}}}
	b.ReportAllocs()
	for b.Loop() {
		s, err := llm.Stream(b.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := s.Recv()
			if err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
			n++
		}
		_ = s.Close()
		if n != 40 {
			b.Fatalf("%d tokens", n)
		}
	}
}
