package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/labstack/echo/v4"
)

// ndjsonType is the streamed answer's content type (PROTOCOL §1.7).
const ndjsonType = "application/x-ndjson"

// ndjson streams chunks as newline-delimited JSON: 200 and the content type on the first
// write, one object per line, flushed at once so the caller hears each line as it is ready.
// It is not safe for concurrent use; the server serialises emit calls.
type ndjson struct {
	ctx context.Context // the request's: cancelled when Saperly closes the connection
	res *echo.Response
	// rc flushes the writer under echo's Response: echo's Flush swallows the error that tells
	// us the connection is gone, the underlying one reports it.
	rc    *http.ResponseController
	enc   *json.Encoder
	now   func() time.Time
	first time.Time // when the first line was flushed; zero until then
	lines int       // lines flushed
	keep  bool      // keep every line flushed, with its time, in kept (recording)
	kept  []agent.LineRecord
}

func newNDJSON(ctx context.Context, res *echo.Response) *ndjson {
	enc := json.NewEncoder(res)
	// Spoken text is not HTML: "<", ">" and "&" go out as themselves, not \u003c.
	enc.SetEscapeHTML(false)
	return &ndjson{
		ctx: ctx,
		res: res,
		rc:  http.NewResponseController(res.Writer),
		enc: enc,
		now: time.Now,
	}
}

// Write sends one chunk as one line and flushes it. It fails once the client has gone away.
func (w *ndjson) Write(c agent.Chunk) error {
	if err := w.ctx.Err(); err != nil {
		return fmt.Errorf("write chunk: %w", err)
	}
	if !w.res.Committed {
		h := w.res.Header()
		h.Set(echo.HeaderContentType, ndjsonType)
		// Ask reverse proxies (nginx) not to buffer the stream.
		h.Set("X-Accel-Buffering", "no")
		h.Set(echo.HeaderCacheControl, "no-cache")
		w.res.WriteHeader(http.StatusOK)
	}
	if err := w.enc.Encode(c); err != nil { // Encode adds the newline
		return fmt.Errorf("write chunk: %w", err)
	}
	if err := w.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("flush chunk: %w", err)
	}
	w.lines++
	if w.first.IsZero() || w.keep {
		now := w.now()
		if w.first.IsZero() {
			w.first = now
		}
		if w.keep {
			w.kept = append(w.kept, agent.LineRecord{Text: c.Text, At: now})
		}
	}
	return nil
}

// Lines returns how many lines were flushed.
func (w *ndjson) Lines() int { return w.lines }

// First returns when the first line was flushed, zero if none was.
func (w *ndjson) First() time.Time { return w.first }
