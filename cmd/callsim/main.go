// Command callsim plays Saperly against a running brain: it signs and delivers webhook events
// exactly as Saperly does (package test/saperly) and prints what the caller would hear, with
// each line's arrival time.
//
//	callsim say "I'd like to book a cleaning"
//	callsim say --call 1b9d… "Tuesday works" --end
//	callsim event --kind interrupted --call 1b9d… --partial "Sure, I can"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "callsim:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "callsim:", err)
		os.Exit(1)
	}
}
