package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/callbrain/callbrain/agent"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newStream(t *testing.T, ctx context.Context) (*ndjson, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/webhook", nil), rec)
	return newNDJSON(ctx, c.Response()), rec
}

func TestNDJSONWritesLines(t *testing.T) {
	t.Parallel()
	w, rec := newStream(t, t.Context())
	assert.True(t, w.First().IsZero())

	require.NoError(t, w.Write(agent.Speak("Sure, I can help with that.")))
	first := w.First()
	assert.False(t, first.IsZero(), "time of the first flush is recorded")
	assert.True(t, rec.Flushed, "each line is flushed as it is written")
	require.NoError(t, w.Write(agent.Speak(`Tuesday <3 p.m.> & "Wednesday"`)))
	require.NoError(t, w.Write(agent.Chunk{Type: "speak", Text: "Line\nbreaks stay inside one line."}))

	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/x-ndjson", rec.Header().Get("Content-Type"))
	assert.Equal(t, 3, w.Lines())
	assert.Equal(t, first, w.First(), "first flush is not moved by later lines")
	assert.Equal(t,
		`{"type":"speak","text":"Sure, I can help with that."}`+"\n"+
			`{"type":"speak","text":"Tuesday <3 p.m.> & \"Wednesday\""}`+"\n"+
			`{"type":"speak","text":"Line\nbreaks stay inside one line."}`+"\n",
		rec.Body.String())
}

func TestNDJSONFailsAfterClientLeft(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	w, rec := newStream(t, ctx)
	require.NoError(t, w.Write(agent.Speak("Hello.")))
	cancel()
	err := w.Write(agent.Speak("Anyone there?"))
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, w.Lines())
	assert.Equal(t, `{"type":"speak","text":"Hello."}`+"\n", rec.Body.String())
}
