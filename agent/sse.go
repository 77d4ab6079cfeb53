package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
)

// sseTransport hands go-openai each model stream through sseBody, so that what OpenAI-compatible
// providers send beyond plain data lines reaches the brain as go-openai can carry it. Other
// responses (errors with a status, non-stream answers) pass untouched.
type sseTransport struct{ base http.RoundTripper }

func (t sseTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		resp.Body = newSSEBody(resp.Body)
	}
	return resp, nil
}

// sseBody rewrites a server-sent event stream into the one-data-line-per-event form go-openai's
// reader handles, and marks every error the provider reports inside it:
//
//   - comments (": OPENROUTER PROCESSING", OpenRouter's keep-alive), blank lines and the id: and
//     retry: fields are dropped. go-openai would keep comments in its error accumulator, count
//     them against its 300-empty-lines limit and fail to decode a later error behind them;
//   - an event named "error" (`event: error` then `data: ...`, as some gateways send it) and a
//     data line that is an error object ({"error":{...}}, as OpenAI, vLLM, Ollama and Groq send
//     it mid-stream) become `data: {"stream_error":<payload>}`, which Recv reads as a model
//     failure. go-openai's own detection of the latter waits for the next line before it
//     reports the error, and reports nothing when the object is not in OpenAI's exact shape;
//   - a body that ends without `data: [DONE]` ends with io.ErrUnexpectedEOF, so a connection
//     lost mid-answer is a failure, not a clean end (Recv stops at a finish_reason before that).
//
// It reads line by line with one reusable buffer.
type sseBody struct {
	src      io.ReadCloser
	r        *bufio.Reader
	buf      []byte // rewritten bytes of the last line
	out      []byte // the part of buf not yet read
	line     []byte // a line longer than the reader's buffer, assembled
	errEvent bool   // the current event is named "error"
	done     bool   // [DONE] seen
	err      error  // the source's error, reported once out is empty
}

func newSSEBody(src io.ReadCloser) *sseBody {
	return &sseBody{src: src, r: bufio.NewReaderSize(src, 4<<10)}
}

var (
	dataField  = []byte("data:")
	eventField = []byte("event:")
	doneData   = []byte("[DONE]")
	errorObj   = []byte(`{"error"`)
)

func (b *sseBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		b.buf = b.buf[:0]
		line, err := b.readLine()
		b.rewrite(line)
		b.out = b.buf
		if err != nil {
			if errors.Is(err, io.EOF) && !b.done {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// maxSSELine bounds one line of a model's stream: a chunk of a few tokens is well under a
// kilobyte, and a provider that never ends a line must not grow the brain's memory.
const maxSSELine = 1 << 20

// ErrSSELineTooLong is the stream error of a line longer than maxSSELine.
var ErrSSELineTooLong = errors.New("model stream line longer than 1 MiB")

// readLine returns the next line without its end of line, valid until the next call.
func (b *sseBody) readLine() ([]byte, error) {
	line, err := b.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		b.line = append(b.line[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(b.line) > maxSSELine {
				return nil, ErrSSELineTooLong
			}
			line, err = b.r.ReadSlice('\n')
			b.line = append(b.line, line...)
		}
		line = b.line
	}
	return bytes.TrimRight(line, "\r\n"), err
}

// rewrite appends to buf what go-openai is to see of one line.
func (b *sseBody) rewrite(line []byte) {
	switch {
	case bytes.HasPrefix(line, eventField):
		b.errEvent = string(bytes.TrimSpace(line[len(eventField):])) == "error"
	case bytes.HasPrefix(line, dataField):
		payload := bytes.TrimSpace(line[len(dataField):])
		switch {
		case b.errEvent || bytes.HasPrefix(payload, errorObj):
			b.buf = append(b.buf, `data: {"stream_error":`...)
			if json.Valid(payload) {
				b.buf = append(b.buf, payload...)
			} else {
				q, _ := json.Marshal(string(payload))
				b.buf = append(b.buf, q...)
			}
			b.buf = append(b.buf, "}\n"...)
		case bytes.Equal(payload, doneData):
			b.done = true
			b.buf = append(b.buf, "data: [DONE]\n"...)
		default:
			b.buf = append(b.buf, "data: "...)
			b.buf = append(b.buf, payload...)
			b.buf = append(b.buf, '\n')
		}
	}
	// Anything else, comments and blank lines included, is dropped. A blank line ends an
	// event, and with it the name "error" (an event's name lasts only to its end).
	if len(line) == 0 {
		b.errEvent = false
	}
}

func (b *sseBody) Close() error { return b.src.Close() }
