package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ErrUnknownCall rejects an event about a call Saperly's REST API does not know.
var ErrUnknownCall = errors.New("unknown call")

// CallLookup asks the carrier about a call the brain has no record of: Saperly's advice is to
// check that a webhook's call_id exists.
type CallLookup interface {
	// LookupCall returns the id of the line the call is on ("" when the answer does not say),
	// or ErrUnknownCall when the carrier does not know the call. Any other error means the
	// carrier could not be asked.
	LookupCall(ctx context.Context, callID string) (lineID string, err error)
}

var _ CallLookup = (*SaperlyAPI)(nil)

// maxCallObject bounds the call object read from the API.
const maxCallObject = 64 << 10

// LookupCall implements CallLookup: GET /calls/{call_id}. The call object's shape is not
// published (PROTOCOL §1.9 documents only the hang-up); its line is read from line_id,
// line_uuid or line.id, at the top level or under "call" or "data".
func (s *SaperlyAPI) LookupCall(ctx context.Context, callID string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/calls/"+url.PathEscape(callID), nil)
	if err != nil {
		return "", fmt.Errorf("look up call %s: %w", callID, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Accept", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("look up call %s: %w", callID, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxCallObject))
	switch {
	case res.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("look up call %s: %w", callID, ErrUnknownCall)
	case res.StatusCode < 200 || res.StatusCode > 299:
		return "", fmt.Errorf("look up call %s: HTTP %d", callID, res.StatusCode)
	case err != nil:
		return "", fmt.Errorf("look up call %s: %w", callID, err)
	}
	return callLine(body), nil
}

// callLine reads the line id out of a call object, "" when it has none it can read.
func callLine(body []byte) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return ""
	}
	for _, wrap := range []string{"call", "data"} {
		if inner, ok := obj[wrap]; ok {
			if id := callLine(inner); id != "" {
				return id
			}
		}
	}
	for _, key := range []string{"line_id", "line_uuid", "lineId"} {
		var id string
		if json.Unmarshal(obj[key], &id) == nil && strings.TrimSpace(id) != "" {
			return strings.TrimSpace(id)
		}
	}
	var line struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(obj["line"], &line) == nil {
		return strings.TrimSpace(line.ID)
	}
	return ""
}

// Bounds of the lookup cache. A known call needs no lookup at all (its record says so); the
// cache spares the API repeated questions about calls the record cannot vouch for yet: the
// turns of a call that started before call_started arrived, and a stream of forged ids.
const (
	lookupTimeout = time.Second // the caller is waiting: past it, the turn goes on (fail open)
	lookupKeep    = 10000       // entries
	lookupFound   = 10 * time.Minute
	lookupMissing = time.Minute
)

// lookupCache remembers LookupCall's answers, found and not found, for a while.
type lookupCache struct {
	mu      sync.Mutex
	entries map[string]lookupEntry
}

type lookupEntry struct {
	lineID string
	known  bool
	exp    time.Time
}

func (c *lookupCache) get(callID string, now time.Time) (lookupEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[callID]
	if !ok || !now.Before(e.exp) {
		return lookupEntry{}, false
	}
	return e, true
}

func (c *lookupCache) put(callID string, e lookupEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]lookupEntry)
	}
	if len(c.entries) >= lookupKeep {
		for id, old := range c.entries {
			if !now.Before(old.exp) {
				delete(c.entries, id)
			}
		}
		for id := range c.entries { // still full: drop arbitrary entries, a tenth at a time
			if len(c.entries) < lookupKeep*9/10 {
				break
			}
			delete(c.entries, id)
		}
	}
	c.entries[callID] = e
}

// checkCall asks whether a call the brain has no record of exists, and on which line, through
// the cache. It returns ErrUnknownCall or ErrWrongLine to refuse the event, nil to go on: also
// when the API cannot answer (fail open: a real caller must not be silenced by an API
// outage), which it reports in lookupErr for the log.
func (a *Agent) checkCall(ctx context.Context, ev Event) (lookupErr, refuse error) {
	now := time.Now()
	e, ok := a.lookups.get(ev.CallID, now)
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		lineID, err := a.lookup.LookupCall(lctx, ev.CallID)
		cancel()
		switch {
		case errors.Is(err, ErrUnknownCall):
			e = lookupEntry{exp: now.Add(lookupMissing)}
		case err != nil:
			return err, nil
		default:
			e = lookupEntry{lineID: lineID, known: true, exp: now.Add(lookupFound)}
		}
		a.lookups.put(ev.CallID, e, now)
	}
	switch {
	case !e.known:
		return nil, fmt.Errorf("call %s: saperly does not know it: %w", ev.CallID, ErrUnknownCall)
	case e.lineID != "" && ev.LineID != "" && e.lineID != ev.LineID:
		return nil, fmt.Errorf("call %s is on line %s per saperly, not %s: %w", ev.CallID, e.lineID, ev.LineID, ErrWrongLine)
	}
	return nil, nil
}
