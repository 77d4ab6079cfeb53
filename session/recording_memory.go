package session

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryRecordings keeps recording captures and the recordings stream in process: the
// in-process store's counterpart of RedisStore's recording methods, for one instance. It is
// safe for concurrent use.
type MemoryRecordings struct {
	opts Options

	mu     sync.Mutex
	lists  map[string]memList   // call id → captures
	open   map[string]time.Time // call id → last capture written
	done   map[string]time.Time // call id → expiry of the claim
	stream []Recording
	lastMS uint64
	seq    uint64
	takes  int
}

// NewMemoryRecordings returns an empty MemoryRecordings; opts.Retention bounds how long
// captures and claims are kept.
func NewMemoryRecordings(opts Options) *MemoryRecordings {
	return &MemoryRecordings{
		opts:  opts.withDefaults(),
		lists: make(map[string]memList),
		open:  make(map[string]time.Time),
		done:  make(map[string]time.Time),
	}
}

// AppendCaptures is RedisStore.AppendCaptures in process.
func (m *MemoryRecordings) AppendCaptures(_ context.Context, caps ...Capture) error {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range caps {
		if c.CallID == "" {
			return fmt.Errorf("append capture: %w", errEmptyID)
		}
	}
	for _, c := range caps {
		l := m.lists[c.CallID]
		if !l.exp.IsZero() && !now.Before(l.exp) {
			l.items = nil
		}
		l.items = append(l.items, string(c.Data))
		l.exp = now.Add(m.opts.Retention)
		m.lists[c.CallID] = l
		m.open[c.CallID] = now
	}
	return nil
}

// IdleCaptures is RedisStore.IdleCaptures in process.
func (m *MemoryRecordings) IdleCaptures(_ context.Context, since time.Time, limit int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	type open struct {
		id string
		at time.Time
	}
	var idle []open
	for id, at := range m.open {
		if at.UnixMilli() < since.UnixMilli() {
			idle = append(idle, open{id, at})
		}
	}
	slices.SortFunc(idle, func(a, b open) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return compareStrings(a.id, b.id)
	})
	out := make([]string, 0, min(len(idle), limit))
	for _, o := range idle[:min(len(idle), limit)] {
		out = append(out, o.id)
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TakeCaptures is RedisStore.TakeCaptures in process.
func (m *MemoryRecordings) TakeCaptures(_ context.Context, callID string) ([][]byte, bool, error) {
	if callID == "" {
		return nil, false, fmt.Errorf("take captures: %w", errEmptyID)
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.lists[callID]
	delete(m.lists, callID)
	delete(m.open, callID)
	if exp, ok := m.done[callID]; ok && now.Before(exp) {
		return nil, false, nil
	}
	m.done[callID] = now.Add(m.opts.Retention)
	if m.takes++; m.takes%pruneEvery == 0 { // claims live one retention: sweep now and then
		for id, exp := range m.done {
			if !now.Before(exp) {
				delete(m.done, id)
			}
		}
	}
	if !l.exp.IsZero() && !now.Before(l.exp) {
		return nil, true, nil
	}
	items := make([][]byte, len(l.items))
	for i, s := range l.items {
		items[i] = []byte(s)
	}
	return items, true, nil
}

// PublishRecording is RedisStore.PublishRecording in process (trimmed to exactly maxLen).
func (m *MemoryRecordings) PublishRecording(_ context.Context, maxLen int64, r Recording) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := uint64(time.Now().UnixMilli())
	if ms <= m.lastMS {
		ms, m.seq = m.lastMS, m.seq+1
	} else {
		m.seq = 0
	}
	m.lastMS = ms
	r.ID = fmt.Sprintf("%d-%d", ms, m.seq)
	r.Script = slices.Clone(r.Script)
	m.stream = append(m.stream, r)
	if maxLen > 0 && int64(len(m.stream)) > maxLen {
		m.stream = slices.Delete(m.stream, 0, len(m.stream)-int(maxLen))
	}
	return r.ID, nil
}

// Recordings is RedisStore.Recordings in process.
func (m *MemoryRecordings) Recordings(_ context.Context, after string, count int64) ([]Recording, error) {
	var ams, aseq uint64
	if after != "" {
		var ok bool
		if ams, aseq, ok = parseStreamID(after); !ok {
			return nil, fmt.Errorf("read recordings after %q: %w", after, ErrBadStreamID)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Recording
	for _, r := range m.stream {
		ms, seq, _ := parseStreamID(r.ID)
		if after != "" && (ms < ams || ms == ams && seq <= aseq) {
			continue
		}
		if count > 0 && int64(len(out)) >= count {
			break
		}
		r.Script = slices.Clone(r.Script)
		out = append(out, r)
	}
	return out, nil
}
