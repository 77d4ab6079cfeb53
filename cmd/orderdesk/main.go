// Command orderdesk serves the example order-status backend (package test/orderdesk) that the
// example order-status agent's HTTP tool calls:
//
//	orderdesk -addr 127.0.0.1:8090 &
//	curl -s -X POST localhost:8090/orders/status -H 'Idempotency-Key: k1' -d '{"order_id":"12345"}'
//	# {"order_id":"12345","status":"shipped","carrier":"UPS","eta":"Thursday"}
//	curl -s localhost:8090/stats
//	# {"requests":1,"side_effects":1}
//
// With ORDERDESK_TOKEN set, every request needs Authorization: Bearer <token>.
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

	"github.com/callbrain/callbrain/test/orderdesk"
	"github.com/callbrain/callbrain/test/serve"
)

// shutdownGrace lets lookups in flight finish on SIGTERM; a very slow one (-delay) is cut
// after it, so the process always exits promptly.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "orderdesk:", err)
		os.Exit(1)
	}
}

// run serves the desk until ctx ends. It prints the listening line on stdout once the port is
// bound, so a script can start the binary and wait for that line.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("orderdesk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen `address`; port 0 picks a free port")
	delay := fs.Duration("delay", 0, "how long each lookup takes, to simulate a slow backend")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderdesk [flags]

The example order-status backend for the example order-status agent's HTTP tool.

  POST /orders/status  {"order_id":"12345"} -> 200 {"order_id","status","carrier","eta"};
                       unknown order -> 404 {"error":"order not found"}; malformed -> 400
  GET  /stats          {"requests":N,"side_effects":M}

A repeated Idempotency-Key gets the stored answer (Idempotent-Replayed: true) without the
lookup being done again; side_effects counts the lookups done. Orders: 12345 (shipped),
23456 (processing), 34567 (delivered), 45678 (cancelled), 98765 (out for delivery).

Environment: ORDERDESK_TOKEN, when set, is required as Authorization: Bearer <token>.

Flags:
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
	if *delay < 0 {
		return errors.New("-delay must not be negative")
	}
	token := getenv("ORDERDESK_TOKEN")

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	srv := &http.Server{
		Handler:           orderdesk.New(orderdesk.Config{Token: token, Delay: *delay}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	auth := "no token required"
	if token != "" {
		auth = "bearer token required"
	}
	if _, err := fmt.Fprintf(stdout, "orderdesk listening on http://%s (%s)\n", ln.Addr(), auth); err != nil {
		_ = ln.Close() // the write error is the one worth reporting
		return fmt.Errorf("print address: %w", err)
	}

	return serve.Run(ctx, srv, ln, shutdownGrace)
}
