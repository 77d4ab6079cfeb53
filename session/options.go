package session

import "time"

// Options configures a store. The zero value is usable: withDefaults fills every empty field.
type Options struct {
	// Prefix is put before every key, so several deployments can share one Redis. It must not
	// contain '{': the keys use Redis Cluster hash tags. Default "callbrain:".
	Prefix string
	// Retention is how long a call's record and history live after the call's last write.
	// Default 24h: long enough to read a finished call back, short enough not to hoard
	// transcripts.
	Retention time.Duration
	// TurnTTL is how long a finished turn's log lives. It bounds how long a retried message
	// can replay the first delivery's answer. Default 10m.
	TurnTTL time.Duration
	// TurnLease is how long a turn's claim lasts without renewal. The owning turn renews it
	// with every turn-log write (agent.Config.TurnLease sets how often when it has nothing
	// to write); a retry may take over a turn whose owner let it lapse (a crash, a
	// partition). Default 2s.
	TurnLease time.Duration
	// CallerMemory is how long SeenCaller remembers that a number called a line, for the
	// prompts' "has called before". Default 90 days.
	CallerMemory time.Duration
}

// Defaults of Options read from the brain's settings (BRAIN_RETENTION, BRAIN_TURN_LEASE).
const (
	DefaultRetention = 24 * time.Hour
	DefaultTurnLease = 2 * time.Second
)

// withDefaults returns o with every empty field set to its default.
func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = "callbrain:"
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.TurnTTL <= 0 {
		o.TurnTTL = 10 * time.Minute
	}
	if o.TurnLease <= 0 {
		o.TurnLease = DefaultTurnLease
	}
	if o.CallerMemory <= 0 {
		o.CallerMemory = 90 * 24 * time.Hour
	}
	return o
}
