package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/test/serve"
)

// api serves a stand-in for Saperly's REST API (hang-ups, SMS sends and call lookups) until
// ctx ends, and prints each request it answers, so end_call and the brain's check of calls it
// has no record of can be tried locally:
//
//	callsim api --addr 127.0.0.1:8091 --key dev --call 3c1f…=5f0c8e2a-… &
//	SAPERLY_API_BASE=http://127.0.0.1:8091/api/v1 SAPERLY_API_KEY=dev brain
//
// GET /api/v1/calls/{id} answers the calls given with --call (call id = line id) or
// registered later with PUT /mock/calls/{id} and a {"line_id":…} body; 404 for any other.
func api(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("api", stderr)
	addr := fs.String("addr", "127.0.0.1:8091", "listen `address`")
	key := fs.String("key", "", "the API `key` the brain must send (empty: any)")
	var calls []string
	fs.Func("call", "a call the API knows, as `call_id=line_id` (repeatable)", func(v string) error {
		id, line, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(id) == "" {
			return fmt.Errorf("want call_id=line_id, got %q", v)
		}
		calls = append(calls, strings.TrimSpace(id), strings.TrimSpace(line))
		return nil
	})
	if rest, err := parse(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("api: unexpected argument %q", rest[0])
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	var mu sync.Mutex // lines of concurrent requests never interleave
	stand := saperly.NewAPI(*key)
	for i := 0; i+1 < len(calls); i += 2 {
		stand.AddCall(calls[i], calls[i+1])
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		stand.ServeHTTP(rec, r)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, "%s %s %s -> %d\n", time.Now().Format("15:04:05.000"), r.Method, r.URL.Path, rec.status)
		if r.URL.Path == saperly.APIBasePath+"/messages" && rec.status == http.StatusOK {
			if msgs := stand.Messages(); len(msgs) > 0 { // the one just recorded: requests are printed one at a time
				last := msgs[len(msgs)-1]
				fmt.Fprintf(stdout, "  sms from line %s to %s: %q\n", last.LineID, last.To, last.Text)
			}
		}
	})}
	fmt.Fprintf(stdout, "saperly api stand-in on http://%s%s\n", ln.Addr(), saperly.APIBasePath)
	return serve.Run(ctx, srv, ln, 2*time.Second)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
