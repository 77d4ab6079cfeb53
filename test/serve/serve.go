// Package serve runs the HTTP servers of callbrain's local tools (the stand-in model, the
// example order desk, the Saperly API stand-in) until their context ends, then shuts them
// down: requests in flight get a grace period, and whatever still hangs after it (a stalled
// answer is the point of a stand-in) is cut, so the process always exits promptly. It also
// writes their JSON answers, and paces them and the load generator (Wait). It imports none of
// callbrain's packages.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Run serves srv on ln until ctx ends or serving fails, then shuts srv down, waiting at most
// grace for requests in flight. It returns nil after a clean stop.
func Run(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if cerr := srv.Close(); cerr != nil {
			return fmt.Errorf("close: %w", cerr)
		}
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// JSON answers with v as a JSON body and status. A value that cannot be encoded is a 500.
func JSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n')) // a client that left cannot be told
}

// Wait pauses for d, or less if ctx ends first (its error then), and leaves no timer behind:
// the pacing of a stand-in or a load generator (a model's token delay, a caller's think time),
// never a way to coordinate.
func Wait(ctx context.Context, d time.Duration) error {
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
