package agent

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCallLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{name: "top level", body: `{"id":"c","line_id":"L1"}`, want: "L1"},
		{name: "line uuid", body: `{"id":"c","line_uuid":" L2 "}`, want: "L2"},
		{name: "nested line object", body: `{"id":"c","line":{"id":"L3","name":"Reception"}}`, want: "L3"},
		{name: "wrapped in data", body: `{"data":{"id":"c","line_id":"L4"}}`, want: "L4"},
		{name: "wrapped in call", body: `{"call":{"line":{"id":"L5"}}}`, want: "L5"},
		{name: "no line", body: `{"id":"c","status":"in-progress"}`, want: ""},
		{name: "line id of the wrong type", body: `{"line_id":7}`, want: ""},
		{name: "not an object", body: `[1,2]`, want: ""},
		{name: "not JSON", body: `<html>`, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, callLine([]byte(tc.body)))
		})
	}
}

func TestLookupCacheIsBounded(t *testing.T) {
	t.Parallel()
	var c lookupCache
	now := time.Now()
	for i := range lookupKeep * 2 {
		c.put(strconv.Itoa(i), lookupEntry{known: true, exp: now.Add(time.Minute)}, now)
	}
	assert.LessOrEqual(t, len(c.entries), lookupKeep)
	_, ok := c.get(strconv.Itoa(lookupKeep*2-1), now)
	assert.True(t, ok, "the newest entry is kept")
	_, ok = c.get(strconv.Itoa(lookupKeep*2-1), now.Add(2*time.Minute))
	assert.False(t, ok, "an expired entry is gone")
}
