package session

import (
	"encoding/json"
	"time"
)

// Keys returns how many keys m holds, expired or not yet pruned included.
func (m *MemoryStore) Keys() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.deliveries) + len(m.claims) + len(m.callers) + len(m.records) + len(m.hists) + len(m.sms) +
		len(m.turns)
}

// SMS returns the messages m keeps for lineID, newest first.
func (m *MemoryStore) SMS(lineID string) ([]SMS, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := m.sms[lineID].items
	out := make([]SMS, len(items))
	for i, raw := range items {
		if err := json.Unmarshal([]byte(raw), &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetClock makes r read the time from now: when it first sees a call.
func (r *RedisRecords) SetClock(now func() time.Time) { r.now = now }
