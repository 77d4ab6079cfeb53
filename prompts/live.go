package prompts

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Reload timing. Editors save in several steps (write a temporary file, rename it over the old
// one, change its mode), so a reload waits until the directory has been quiet for debounce;
// maxDelay bounds that wait when events keep coming, so an edit is live within a second.
const (
	debounce = 100 * time.Millisecond
	maxDelay = 500 * time.Millisecond
)

// keepVersions is how many versions of one agent Live remembers for calls in progress. A call
// lasts minutes; 32 saves of one file within a call's lifetime is already far-fetched.
const keepVersions = 32

// Live holds the current Library and reloads it when files change.
type Live struct {
	dir string
	log *zap.Logger
	cur atomic.Pointer[Library]
	// byVersion indexes every remembered version; rebuilt on each reload and swapped whole,
	// so lookups take no lock.
	byVersion atomic.Pointer[map[string]*Agent]

	watching func() // a test hook: called once Watch is watching
	onReload func(changed bool, rejected int)

	mu       sync.Mutex          // serialises reloads; guards the fields below
	history  map[string][]*Agent // per agent name, oldest first, at most keepVersions
	adopted  []*Agent            // versions loaded by other replicas (Adopt), oldest first
	rejected map[string]string   // per file, the problems last logged, so each is logged once
}

// NewLive loads dir. The initial load is strict, as Load: it returns the error, and the brain
// refuses to start on invalid files. Reloads log to log (nil: nowhere).
func NewLive(dir string, log *zap.Logger) (*Live, error) {
	if log == nil {
		log = zap.NewNop()
	}
	lib, err := Load(dir)
	if err != nil {
		return nil, err
	}
	lv := &Live{dir: dir, log: log, history: make(map[string][]*Agent), rejected: make(map[string]string)}
	lv.cur.Store(lib)
	lv.remember(lib)
	return lv, nil
}

// Current returns the library in force. Atomic and lock-free: it is called on every turn.
func (lv *Live) Current() *Library { return lv.cur.Load() }

// Version returns any agent version loaded since start, so a call keeps the prompt it started
// with (at most the last 32 versions of each agent are kept). Two agents whose files are
// byte-identical share a version; either may be returned, and both render the same prompt.
func (lv *Live) Version(version string) (*Agent, bool) {
	a, ok := (*lv.byVersion.Load())[version]
	return a, ok
}

// OnReload sets f to be called after every reload that read the directory: whether the
// library changed, and how many problems made it keep something (metrics hang on it). f runs
// under the reload lock and must return at once.
func (lv *Live) OnReload(f func(changed bool, rejected int)) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.onReload = f
}

// Reload rereads the directory now, as a change event does (for tests and SIGHUP). A valid
// file replaces its agent; an invalid one is logged ("prompt rejected", at Error, with the file,
// the line and what is wrong) and the last good version of that agent stays. A broken
// lines.yaml keeps the previous lines. If the directory has gone, everything stays.
func (lv *Live) Reload() {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	prev := lv.cur.Load()
	files, err := readDir(lv.dir)
	if err != nil {
		lv.log.Error("prompts reload", zap.String("prompts_dir", lv.dir), zap.Error(err))
		return
	}
	if files.missing {
		lv.log.Warn("prompts dir missing: keeping the loaded agents", zap.String("prompts_dir", lv.dir))
		return
	}
	next, rejected := merge(prev, files)
	lv.report(rejected)
	changed := next != nil && !same(prev, next)
	if lv.onReload != nil {
		lv.onReload(changed, len(rejected))
	}
	if !changed {
		return
	}
	lv.cur.Store(next)
	lv.remember(next)
	names := next.Names()
	versions := make([]string, len(names))
	for i, n := range names {
		versions[i] = n + "@" + next.agents[n].Version
	}
	lv.log.Info("prompts reloaded", zap.Strings("agents", names), zap.Strings("versions", versions),
		zap.Int("lines", len(next.lines.lines)), zap.String("prompts_dir", lv.dir))
}

// merge builds the next library from what is on disk, keeping from prev whatever is broken on
// disk. It returns the problems that made it keep something, and nil when even that failed
// (prev stays whole).
func merge(prev *Library, files dirFiles) (*Library, []*FileError) {
	rejected := slices.Clone(files.errs)
	agents := make(map[string]*Agent)
	failed := make(map[string]bool)
	for _, f := range files.agents {
		old := prev.agents[f.name]
		a, errs := parseAgent(f.name, f.path, f.raw)
		switch {
		case len(errs) > 0:
			rejected = append(rejected, errs...)
			if old != nil {
				agents[f.name] = old
			} else {
				failed[f.name] = true
			}
		case old != nil && old.Version == a.Version && old.Source == a.Source:
			agents[f.name] = old // unchanged: keep the same *Agent
		default:
			agents[f.name] = a
		}
	}
	if _, ok := agents[DefaultName]; !ok && !failed[DefaultName] {
		agents[DefaultName] = fallbackDefault(prev)
	}

	lines := prev.lines
	if files.lines == nil {
		if prev.lines.path != "" {
			lines = &lineSet{}
		}
	} else if ls, errs := parseLines(files.lines.path, files.lines.raw); len(errs) > 0 {
		rejected = append(rejected, errs...)
	} else if ls.version != prev.lines.version || ls.path != prev.lines.path {
		lines = ls
	}

	// An agent file removed while lines still use it stays, and says so.
	for name, old := range prev.agents {
		if _, ok := agents[name]; !ok && !failed[name] && lines.uses(name) {
			agents[name] = old
			rejected = append(rejected, fileErr(old.Source, 0, "removed, but %s still sends calls to agent %s: keeping version %s", linesFile, name, old.Version))
		}
	}

	// Agents and lines must hold together. Undo one change at a time until they do; prev held
	// together, so this ends there at the latest.
	for range len(agents) + len(prev.agents) + 2 {
		problems := validate(agents, lines, failed)
		if len(problems) == 0 {
			return &Library{dir: prev.dir, agents: agents, lines: lines}, rejected
		}
		p := problems[0]
		agentChanged := p.agent != "" && agents[p.agent] != prev.agents[p.agent]
		linesChanged := lines != prev.lines
		// When both changed, blame the lines if the new agent fitted the line as it was.
		linesToBlame := linesChanged && agentChanged && fitsPrevLine(agents[p.agent], prev.lines, p.lineID)
		switch {
		case agentChanged && !linesToBlame:
			rejected = append(rejected, p.err)
			revert(agents, prev, p.agent)
		case linesChanged:
			rejected = append(rejected, linesProblem(lines, p))
			lines = prev.lines
		default:
			rejected = append(rejected, p.err)
			return nil, rejected
		}
	}
	return nil, rejected
}

// fitsPrevLine reports whether agent a renders for the previous version of line id, so a
// failure with the new version is the new lines' doing.
func fitsPrevLine(a *Agent, prev *lineSet, id string) bool {
	ln, ok := prev.lines[id]
	return id != "" && ok && ln.Agent == a.Name && len(checkRender(a, id, ln.Vars, false)) == 0
}

// revert puts back prev's version of an agent, or drops an agent prev did not have.
func revert(agents map[string]*Agent, prev *Library, name string) {
	if old, ok := prev.agents[name]; ok {
		agents[name] = old
		return
	}
	delete(agents, name)
}

// fallbackDefault is the built-in default, reusing prev's when it already was.
func fallbackDefault(prev *Library) *Agent {
	if prev.Embedded() {
		return prev.Default()
	}
	def, err := builtIn()
	if err != nil {
		return prev.Default() // cannot happen: a test keeps the embedded default valid
	}
	return def
}

// linesProblem words a problem as lines.yaml's, the file being rejected.
func linesProblem(lines *lineSet, p problem) *FileError {
	if p.unknownAgent || p.lineID == "" {
		return p.err
	}
	return fileErr(lines.path, lines.at[p.lineID], "line %s: %v", p.lineID, p.err)
}

// same reports whether two libraries hold the same agents and lines.
func same(a, b *Library) bool {
	return a.lines == b.lines && maps.Equal(a.agents, b.agents)
}

// report logs each file's problems once, when they change.
func (lv *Live) report(rejected []*FileError) {
	sortErrors(rejected)
	byFile := make(map[string][]*FileError)
	for _, e := range rejected {
		byFile[e.File] = append(byFile[e.File], e)
	}
	now := make(map[string]string, len(byFile))
	for file, errs := range byFile {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		now[file] = strings.Join(msgs, "\n")
		if lv.rejected[file] == now[file] {
			continue
		}
		for _, e := range errs {
			lv.log.Error("prompt rejected", zap.String("file", e.File), zap.Int("line", e.Line), zap.Error(e.Err))
		}
	}
	lv.rejected = now
}

// remember adds lib's agents to the versions kept for calls in progress.
func (lv *Live) remember(lib *Library) {
	for name, a := range lib.agents {
		h := slices.DeleteFunc(lv.history[name], func(o *Agent) bool { return o.Version == a.Version })
		h = append(h, a)
		if len(h) > keepVersions {
			h = slices.Delete(h, 0, len(h)-keepVersions)
		}
		lv.history[name] = h
	}
	idx := make(map[string]*Agent)
	for _, a := range lv.adopted {
		idx[a.Version] = a
	}
	for _, name := range slices.Sorted(maps.Keys(lv.history)) {
		for _, a := range lv.history[name] {
			idx[a.Version] = a
		}
	}
	for _, a := range lib.agents { // the agents in force win a shared version
		idx[a.Version] = a
	}
	lv.byVersion.Store(&idx)
}

// Watch reloads the library whenever something in the directory changes, until ctx ends; it
// then returns nil. It watches the directory and its parent, so it follows a directory that is
// created later or replaced by a symlink swap, and a Kubernetes ConfigMap volume (whose files
// are links through a "..data" link that is swapped on update). It returns an error only when
// it cannot watch at all.
func (lv *Live) Watch(ctx context.Context) error {
	dir, err := filepath.Abs(lv.dir)
	if err != nil {
		return fmt.Errorf("watch prompts dir %s: %w", lv.dir, err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch prompts dir %s: %w", lv.dir, err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			lv.log.Warn("close prompts watcher", zap.Error(err))
		}
	}()
	parent := filepath.Dir(dir)
	dirErr := w.Add(dir)
	parentErr := error(nil)
	if parent != dir {
		parentErr = w.Add(parent)
	}
	switch {
	case dirErr != nil && parentErr != nil:
		return fmt.Errorf("watch prompts dir %s: %w", lv.dir, dirErr)
	case dirErr != nil:
		lv.log.Warn("prompts dir not there yet: watching for it", zap.String("prompts_dir", lv.dir), zap.Error(dirErr))
	case parentErr != nil:
		lv.log.Debug("prompts dir parent not watched: a swap of the dir itself goes unseen", zap.Error(parentErr))
	}
	lv.Reload() // whatever changed before the watch began
	if lv.watching != nil {
		lv.watching()
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pendingSince time.Time // zero when no reload is pending
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if filepath.Dir(ev.Name) == parent && ev.Name != dir {
				continue // a neighbour of the dir
			}
			if ev.Name == dir {
				// The dir itself was created, removed, or a link to it swapped: watch what it
				// is now. Remove fails when it was not watched, which is fine.
				_ = w.Remove(dir)
				if err := w.Add(dir); err != nil {
					lv.log.Debug("prompts dir not watchable", zap.Error(err))
				}
			}
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			// Wait for quiet, but never past maxDelay from the first event.
			timer.Reset(min(debounce, max(0, maxDelay-now.Sub(pendingSince))))
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			lv.log.Warn("prompts watcher", zap.Error(err))
		case <-timer.C:
			pendingSince = time.Time{}
			lv.Reload()
		}
	}
}
