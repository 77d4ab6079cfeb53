// Command mockllm serves an OpenAI-compatible stand-in model (package test/mockllm) on a local
// port, for end-to-end tests and for trying callbrain without a model account:
//
//	mockllm -addr 127.0.0.1:8081 &
//	OPENAI_BASE_URL=http://127.0.0.1:8081/v1 OPENAI_API_KEY=any go run ./cmd/brain
//
// The flags set the default behaviour of every request; POST /mock/script queues per-request
// behaviours on top, scripted tool calls included. With tools offered and nothing scripted, it
// calls an order-status tool when the caller gives an order number, reads tool results back in
// words, and calls end_call after a goodbye (see the package documentation of test/mockllm).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/serve"
)

// shutdownGrace lets answers in flight finish on SIGTERM; a hung or stalled request is cut
// after it, so the process always exits promptly.
const shutdownGrace = 2 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "mockllm:", err)
		os.Exit(1)
	}
}

// run serves the mock until ctx ends. It prints the listening line on stdout once the port is
// bound, so a script can start the binary and wait for that line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var b mockllm.Behavior
	addr := fs.String("addr", "127.0.0.1:8081", "listen `address`; port 0 picks a free port")
	fs.DurationVar(&b.TTFT, "ttft", 0, "delay before the first content token")
	fs.DurationVar(&b.TokenDelay, "token-delay", 30*time.Millisecond, "delay between tokens")
	fs.IntVar(&b.Status, "status", 0, "answer every request with this HTTP `status` and an OpenAI-style error")
	fs.IntVar(&b.StallAfter, "stall-after", 0, "pause for -stall once this many tokens are out")
	fs.DurationVar(&b.Stall, "stall", 0, "length of the pause after -stall-after tokens")
	fs.IntVar(&b.CutAfter, "cut-after", 0, "close the connection abruptly once this many tokens are out (0: never)")
	fs.BoolVar(&b.Hang, "hang", false, "never answer; wait until the client gives up")
	fs.StringVar(&b.Reply, "reply", "", "answer this `text` instead of the demo receptionist's reply and the tool rules")
	scripts := fs.String("scripts", "", "answer each utterance with the answer recorded for it in the call scripts in this `dir` (docs/scripts.md), at the recorded pace")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mockllm [flags]

An OpenAI-compatible stand-in model. It answers POST /v1/chat/completions (streamed or not) like
the brain's offline demo model, unless -reply or a scripted behaviour says otherwise, and lists
models on GET /v1/models. Any API key is accepted.

With tools offered and nothing scripted, it calls them by these rules (the first that applies):
  1. the messages end with tool results: it answers in words from them ({"status":"shipped",
     "eta":"Thursday"} -> "I checked that for you: status shipped, eta Thursday."; an "error"
     field -> "I'm sorry, I couldn't check that: ..."; nothing after an end_call result);
  2. a tool has an "order_id" parameter and the caller's last words hold a number of 3+ digits:
     it calls that tool with {"order_id":"<digits>"};
  3. end_call is offered and the caller says bye, goodbye or that's all: it says "Thanks for
     calling, goodbye!" and calls end_call;
  4. otherwise the demo reply.

With -scripts DIR, each caller utterance that a script in DIR recorded an answer for is
answered with that answer (its words without holding phrases, the recorded tool calls first
when there were any), paced so its lines complete when they were recorded; the answer recorded
in the same conversation wins over one recorded after other words. An utterance nobody recorded
gets the default behaviour above, and is named once on stderr.

Control API: POST /mock/script (JSON array of behaviours, queued per request), GET /mock/requests
(with the tools offered, and tool calls and results in the messages), POST /mock/reset.
A behaviour: {"model","reply","tool_calls","ttft_ms","token_delay_ms","status","stall_after",
"stall_ms","cut_after","hang"}; a tool call: {"name","arguments"}, arguments a JSON object or
its text. With tool_calls the answer is those calls (after the reply, if any), streamed as
OpenAI streams them, ending with finish_reason "tool_calls".

Flags (the default behaviour of every request):
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if b.TTFT < 0 || b.TokenDelay < 0 || b.Stall < 0 || b.StallAfter < 0 || b.CutAfter < 0 {
		return errors.New("durations and token counts must not be negative")
	}
	if b.Status != 0 && (b.Status < 100 || b.Status > 599) {
		return fmt.Errorf("-status %d is not an HTTP status", b.Status)
	}

	opts := mockllm.Options{Default: b}
	if *scripts != "" {
		set, err := callscript.Load(*scripts)
		if err != nil {
			return fmt.Errorf("-scripts: %w", err)
		}
		replies := callscript.NewReplies(set)
		if replies.Len() == 0 {
			return fmt.Errorf("-scripts %s: no script records an answer (answer: under a say turn)", *scripts)
		}
		opts.Answer = recorded(replies, stderr)
		fmt.Fprintf(stderr, "mockllm: %d recorded answers from %s\n", replies.Len(), plural(len(set), "script"))
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           mockllm.New(opts),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if _, err := fmt.Fprintf(stdout, "mockllm listening on http://%s/v1\n", ln.Addr()); err != nil {
		_ = ln.Close() // the write error is the one worth reporting
		return fmt.Errorf("print address: %w", err)
	}

	return serve.Run(ctx, srv, ln, shutdownGrace)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
