package transport

import (
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// shedLogEvery spaces the log lines about shed connections: a flood sheds thousands.
const shedLogEvery = 10 * time.Second

// connLimit bounds the server's open connections. At the cap, a new connection first makes
// room by closing the connection that has been idle longest (one that sent no request yet, or
// a keep-alive connection between requests); when every connection is busy with a request,
// the new one is closed at once. So a flood of idle connections can neither exhaust file
// descriptors and memory nor stop the server accepting, and Saperly's deliveries, which send
// their request as soon as they connect, keep being answered.
type connLimit struct {
	max int
	log *zap.Logger

	mu      sync.Mutex
	conns   map[net.Conn]connState
	shed    int // idle connections closed to make room, since the last log line
	refused int // new connections closed because every connection was busy
	logged  time.Time
}

type connState struct {
	busy  bool      // serving a request
	since time.Time // idle since
}

func newConnLimit(max int, log *zap.Logger) *connLimit {
	return &connLimit{max: max, log: log, conns: make(map[net.Conn]connState)}
}

// listener returns ln with the limit applied to the connections it accepts.
func (l *connLimit) listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l}
}

// track is the http.Server's ConnState hook.
func (l *connLimit) track(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.conns[c]
	if !ok {
		return // shed already, or not accepted through the limit
	}
	switch st {
	case http.StateActive:
		cur.busy = true
	case http.StateIdle:
		cur = connState{since: time.Now()}
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
		return
	default:
		return
	}
	l.conns[c] = cur
}

// open returns how many connections are open.
func (l *connLimit) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// admit makes room for c and counts it in, or reports that it must be closed.
func (l *connLimit) admit(c net.Conn) (victim net.Conn, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.report(now)
	if len(l.conns) >= l.max {
		var oldest time.Time
		for vc, st := range l.conns {
			if !st.busy && (victim == nil || st.since.Before(oldest)) {
				victim, oldest = vc, st.since
			}
		}
		if victim == nil {
			l.refused++
			return nil, false
		}
		delete(l.conns, victim)
		l.shed++
	}
	l.conns[c] = connState{since: now} // idle until its first request starts
	return victim, true
}

// report logs what was shed, at most once per shedLogEvery. The caller holds mu.
func (l *connLimit) report(now time.Time) {
	if l.shed+l.refused == 0 || now.Sub(l.logged) < shedLogEvery {
		return
	}
	l.log.Warn("connection limit reached", zap.Int("max_conns", l.max),
		zap.Int("idle_shed", l.shed), zap.Int("busy_refused", l.refused))
	l.shed, l.refused, l.logged = 0, 0, now
}

type limitedListener struct {
	net.Listener
	l *connLimit
}

// Accept returns the next connection the limit admits, closing whatever it sheds.
func (ln *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		victim, ok := ln.l.admit(c)
		if victim != nil {
			_ = victim.Close() // its serving goroutine sees the close and ends
		}
		if ok {
			return c, nil
		}
		_ = c.Close() // every connection is busy: refuse this one
	}
}
