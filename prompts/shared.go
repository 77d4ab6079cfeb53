package prompts

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Sharing versions between replicas: a call is pinned to the agent version it started with,
// and any replica may answer its next turn. The replica that pins a call stores the
// version's file (Raw) where the others can read it; one that meets a version it never
// loaded parses that file (ParseVersion) and keeps it (Adopt).

// keepAdopted is how many versions loaded from other replicas Live keeps.
const keepAdopted = 64

// Raw returns the agent's file as read: Version is its hash, and ParseVersion rebuilds the
// agent from it.
func (a *Agent) Raw() []byte {
	if a == nil {
		return nil
	}
	return a.raw
}

// ErrVersionMismatch is returned by ParseVersion when the file's hash is not the version
// asked for: it was altered or stored under the wrong key.
var ErrVersionMismatch = errors.New("the file's content hash is not its version")

// ParseVersion rebuilds agent version want of agent name from its file raw, as another
// replica loaded it (source names where it came from, for errors and logs). The template is
// parsed, not rendered: the line vars are this replica's, and rendering a pinned version that
// no longer fits them falls back as for any pinned version.
func ParseVersion(name, source, want string, raw []byte) (*Agent, error) {
	if got := version(raw); got != want {
		return nil, fmt.Errorf("agent %s version %s from %s: %w (it is %s)", name, want, source, ErrVersionMismatch, got)
	}
	a, errs := parseAgent(name, source, raw)
	if len(errs) > 0 {
		all := make([]error, len(errs))
		for i, e := range errs {
			all[i] = e
		}
		return nil, fmt.Errorf("agent %s version %s: %w", name, want, errors.Join(all...))
	}
	return a, nil
}

// Adopt keeps a, a version loaded by another replica, so Version finds it from now on. At
// most the last 64 adopted versions are kept; the versions this replica loaded itself win.
func (lv *Live) Adopt(a *Agent) {
	if a == nil {
		return
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.adopted = slices.DeleteFunc(lv.adopted, func(o *Agent) bool { return o.Version == a.Version })
	lv.adopted = append(lv.adopted, a)
	var evicted []*Agent
	if n := len(lv.adopted) - keepAdopted; n > 0 {
		evicted = slices.Clone(lv.adopted[:n])
		lv.adopted = slices.Delete(lv.adopted, 0, n)
	}
	idx := maps.Clone(*lv.byVersion.Load())
	if _, ok := idx[a.Version]; !ok {
		idx[a.Version] = a
	}
	for _, o := range evicted {
		if idx[o.Version] == o { // not a version this replica loaded itself
			delete(idx, o.Version)
		}
	}
	lv.byVersion.Store(&idx)
}
