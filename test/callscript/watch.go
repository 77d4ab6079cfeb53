package callscript

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
)

// watchKey carries a delivery's *watch in its request context.
type watchKey struct{}

// watch cancels a delivery when its answer goes quiet for longer than gap, as Saperly gives
// up on a stream that sends no line for 15 s. Every byte of the answer re-arms it.
type watch struct {
	gap  time.Duration // 0: no gap budget
	stop context.CancelCauseFunc

	mu     sync.Mutex
	timer  *time.Timer
	closed bool
}

func (w *watch) arm() {
	if w == nil || w.gap <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.gap, func() { w.stop(errLineGap) })
		return
	}
	w.timer.Reset(w.gap)
}

func (w *watch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// gapTransport arms a request's watch when it is sent and on every read of its answer.
type gapTransport struct{ base http.RoundTripper }

func (g gapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	w, _ := req.Context().Value(watchKey{}).(*watch)
	w.arm()
	res, err := g.base.RoundTrip(req)
	if err != nil || w == nil {
		return res, err
	}
	w.arm()
	res.Body = &watchedBody{ReadCloser: res.Body, w: w}
	return res, nil
}

type watchedBody struct {
	io.ReadCloser
	w *watch
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.arm()
	}
	return n, err
}

// plainText returns the text of a plain JSON answer ({"text":"…"}), or "".
func plainText(body []byte) string {
	var v struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Text
}
