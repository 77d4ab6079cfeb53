package prompts_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/callbrain/callbrain/prompts"
)

// versionOf is the version Live gives a file with this content.
func versionOf(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])[:12]
}

func newLive(t *testing.T, dir string) (*prompts.Live, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	lv, err := prompts.NewLive(dir, zap.New(core))
	require.NoError(t, err)
	return lv, logs
}

// watch runs lv.Watch until the test ends, and checks it then returns nil. It returns once
// Watch is watching, so every later change is seen through file events.
func watch(t *testing.T, lv *prompts.Live) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	ready := make(chan struct{})
	prompts.OnWatching(lv, func() { close(ready) })
	go func() { done <- lv.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch returned before watching: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch is not watching")
	}
}

// eventually waits, bounded, for cond: a reload takes a debounce and a read.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 5*time.Millisecond, append([]any{msg}, args...)...)
}

// replace writes a file the way most editors save: a temporary file renamed over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func rejected(logs *observer.ObservedLogs, file string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterMessage("prompt rejected").All() {
		if e.ContextMap()["file"] == file {
			out = append(out, e)
		}
	}
	return out
}

func TestLiveWatch(t *testing.T) {
	t.Parallel()
	const (
		def1  = "You are the front desk.\n"
		def2  = "You are the front desk. Be brief.\n"
		bad   = "---\nmodel: gpt-4o\ngreeting: Hi\n---\nYou are the front desk.\n"
		def3  = "---\nmodel: gpt-4o\n---\nYou are the front desk. Be very brief.\n"
		shop1 = "---\nvars: {shop: Ours}\n---\nWelcome to {{.Vars.shop}}.\n"
		shop2 = "---\nvars: {shop: Ours}\n---\nWelcome, welcome, to {{.Vars.shop}}.\n"
		lines = "L1:\n  agent: shop\n  vars: {shop: Line One}\n"
	)
	dir := writeDir(t, map[string]string{"default.md": def1, "shop.md": shop1, "lines.yaml": lines})
	lv, logs := newLive(t, dir)
	watch(t, lv)
	defaultPath := filepath.Join(dir, "default.md")
	version := func(name string) string {
		a, ok := lv.Current().Agent(name)
		if !ok {
			return ""
		}
		return a.Version
	}
	require.Equal(t, versionOf(def1), version("default"))

	// An in-place save.
	write(t, defaultPath, def2)
	eventually(t, func() bool { return version("default") == versionOf(def2) }, "edit in place")

	// An editor's atomic save: write elsewhere, rename over.
	replace(t, filepath.Join(dir, "shop.md"), shop2)
	eventually(t, func() bool { return version("shop") == versionOf(shop2) }, "atomic replace")
	assert.Equal(t, versionOf(def2), version("default"))

	// A broken save is rejected with its file and line; the last good version stays while
	// another file still reloads.
	write(t, defaultPath, bad)
	replace(t, filepath.Join(dir, "shop.md"), shop1)
	eventually(t, func() bool { return len(rejected(logs, defaultPath)) > 0 }, "rejection logged")
	eventually(t, func() bool { return version("shop") == versionOf(shop1) }, "other files still reload")
	entry := rejected(logs, defaultPath)[0]
	assert.Equal(t, zapcore.ErrorLevel, entry.Level)
	assert.Equal(t, int64(3), entry.ContextMap()["line"])
	assert.Contains(t, entry.ContextMap()["error"], `unknown front matter key "greeting"`)
	assert.Equal(t, versionOf(def2), version("default"), "the last good version stays")

	// Fixed: the new version is in force, and the older ones are still there for calls that
	// started with them.
	write(t, defaultPath, def3)
	eventually(t, func() bool { return version("default") == versionOf(def3) }, "fixed file reloads")
	for _, v := range []string{def1, def2, def3} {
		a, ok := lv.Version(versionOf(v))
		if assert.True(t, ok, "version of %q", v) {
			assert.Equal(t, versionOf(v), a.Version)
			assert.Equal(t, "default", a.Name)
		}
	}
	_, ok := lv.Version(versionOf(bad))
	assert.False(t, ok, "a rejected file is no version")

	// A broken lines.yaml keeps the previous lines.
	write(t, filepath.Join(dir, "lines.yaml"), "L1:\n  agent: shop\n   vars: {}\n")
	linesPath := filepath.Join(dir, "lines.yaml")
	eventually(t, func() bool { return len(rejected(logs, linesPath)) > 0 }, "lines.yaml rejection logged")
	assert.Equal(t, int64(3), rejected(logs, linesPath)[0].ContextMap()["line"])
	a, ln := lv.Current().ForLine("L1")
	assert.Equal(t, "shop", a.Name)
	assert.Equal(t, "Line One", ln.Vars["shop"])

	assert.NotEmpty(t, logs.FilterMessage("prompts reloaded").All())
}

// TestLiveWatchSymlinks covers directories that are swapped rather than edited: a Kubernetes
// ConfigMap volume, whose files link through "..data", itself a link swapped on update, and a
// PROMPTS_DIR that is a symlink repointed to a new directory.
func TestLiveWatchSymlinks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup lays out root with v1 and returns the prompts dir; swap moves it to v2.
		setup func(t *testing.T, root string) string
		swap  func(t *testing.T, root string)
	}{
		{
			name: "configmap volume",
			setup: func(t *testing.T, root string) string {
				dir := filepath.Join(root, "volume")
				require.NoError(t, os.MkdirAll(filepath.Join(dir, "..v1"), 0o755))
				write(t, filepath.Join(dir, "..v1", "default.md"), "Version one.\n")
				require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
				require.NoError(t, os.Symlink(filepath.Join("..data", "default.md"), filepath.Join(dir, "default.md")))
				return dir
			},
			swap: func(t *testing.T, root string) {
				dir := filepath.Join(root, "volume")
				require.NoError(t, os.MkdirAll(filepath.Join(dir, "..v2"), 0o755))
				write(t, filepath.Join(dir, "..v2", "default.md"), "Version two.\n")
				require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
				require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
				require.NoError(t, os.RemoveAll(filepath.Join(dir, "..v1")))
			},
		},
		{
			name: "dir is a symlink repointed",
			setup: func(t *testing.T, root string) string {
				require.NoError(t, os.MkdirAll(filepath.Join(root, "v1"), 0o755))
				write(t, filepath.Join(root, "v1", "default.md"), "Version one.\n")
				require.NoError(t, os.Symlink("v1", filepath.Join(root, "prompts")))
				return filepath.Join(root, "prompts")
			},
			swap: func(t *testing.T, root string) {
				require.NoError(t, os.MkdirAll(filepath.Join(root, "v2"), 0o755))
				write(t, filepath.Join(root, "v2", "default.md"), "Version two.\n")
				require.NoError(t, os.Symlink("v2", filepath.Join(root, "prompts.tmp")))
				require.NoError(t, os.Rename(filepath.Join(root, "prompts.tmp"), filepath.Join(root, "prompts")))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			dir := tt.setup(t, root)
			lv, _ := newLive(t, dir)
			require.Equal(t, versionOf("Version one.\n"), lv.Current().Default().Version)
			watch(t, lv)
			tt.swap(t, root)
			eventually(t, func() bool { return lv.Current().Default().Version == versionOf("Version two.\n") }, "swap seen")
			_, ok := lv.Version(versionOf("Version one.\n"))
			assert.True(t, ok)
		})
	}
}

// TestLiveWatchDirCreatedLater starts with no directory (the embedded default) and picks the
// directory up when it appears.
func TestLiveWatchDirCreatedLater(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "prompts")
	lv, _ := newLive(t, dir)
	require.True(t, lv.Current().Embedded())
	watch(t, lv)
	// The dir appears (seen through its parent), then its file (seen through the dir, once
	// its creation has been seen and it is watched).
	require.NoError(t, os.Mkdir(dir, 0o755))
	write(t, filepath.Join(dir, "default.md"), "Mine.\n")
	eventually(t, func() bool { return !lv.Current().Embedded() }, "new dir read")
	assert.Equal(t, versionOf("Mine.\n"), lv.Current().Default().Version)
	write(t, filepath.Join(dir, "default.md"), "Mine, changed.\n")
	eventually(t, func() bool { return lv.Current().Default().Version == versionOf("Mine, changed.\n") }, "new dir watched")
}

// TestWatchStops checks Watch returns when its context ends and leaves no goroutine behind
// (fsnotify's reader included). Not parallel: it counts goroutines.
func TestWatchStops(t *testing.T) {
	dir := writeDir(t, map[string]string{"default.md": plainDefault})
	lv, _ := newLive(t, dir)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	ready := make(chan struct{})
	prompts.OnWatching(lv, func() { close(ready) })
	go func() { done <- lv.Watch(ctx) }()
	<-ready
	write(t, filepath.Join(dir, "default.md"), "Changed.\n")
	eventually(t, func() bool { return lv.Current().Default().Version == versionOf("Changed.\n") }, "watching")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
	eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "fsnotify") && !strings.Contains(stacks, "(*Live).Watch")
	}, "goroutines left behind")
}

func TestLiveReload(t *testing.T) {
	t.Parallel()
	const (
		def   = "You are the front desk.\n"
		shop  = "Welcome to {{.Vars.shop}}.\n" // the shop's name comes from its line
		lines = "L1: {agent: shop, vars: {shop: Ours}}\n"
	)
	base := map[string]string{"default.md": def, "shop.md": shop, "lines.yaml": lines}
	tests := []struct {
		name   string
		change map[string]string // files to write; "" deletes
		// want is each agent's expected content afterwards ("" = absent); no "default" means
		// the built-in one.
		want      map[string]string
		wantLines string // lines.yaml as in force afterwards
		// wantRejected are fragments expected in the "prompt rejected" logs, each read as
		// "file:line: error" (or "file: error" without a line).
		wantRejected []string
	}{
		{
			name:      "new agent and the line that uses it, together",
			change:    map[string]string{"sales.md": "Sell {{.Vars.item}}.\n", "lines.yaml": lines + "L2: {agent: sales, vars: {item: hats}}\n"},
			want:      map[string]string{"default": def, "shop": shop, "sales": "Sell {{.Vars.item}}.\n"},
			wantLines: lines + "L2: {agent: sales, vars: {item: hats}}\n",
		},
		{
			name:      "an agent and its line's new var, together",
			change:    map[string]string{"shop.md": shop + "Open {{.Vars.hours}}.\n", "lines.yaml": "L1: {agent: shop, vars: {shop: Ours, hours: 9 to 5}}\n"},
			want:      map[string]string{"default": def, "shop": shop + "Open {{.Vars.hours}}.\n"},
			wantLines: "L1: {agent: shop, vars: {shop: Ours, hours: 9 to 5}}\n",
		},
		{
			name:         "lines naming an unknown agent keep the previous lines",
			change:       map[string]string{"lines.yaml": lines + "L2: {agent: sales}\n"},
			want:         map[string]string{"default": def, "shop": shop},
			wantLines:    lines,
			wantRejected: []string{`lines.yaml:2: line L2: unknown agent "sales"`},
		},
		{
			name:         "an agent needing a var its line lacks keeps its last version",
			change:       map[string]string{"shop.md": shop + "Open {{.Vars.hours}}.\n"},
			want:         map[string]string{"default": def, "shop": shop},
			wantLines:    lines,
			wantRejected: []string{"shop.md:2: .Vars.hours is not set when rendered for line L1 of lines.yaml"},
		},
		{
			name:         "lines dropping a var an agent needs keep the previous lines",
			change:       map[string]string{"lines.yaml": "L1: {agent: shop}\n"},
			want:         map[string]string{"default": def, "shop": shop},
			wantLines:    lines,
			wantRejected: []string{"lines.yaml:1: line L1: shop.md:1: .Vars.shop is not set when rendered for line L1"},
		},
		{
			name: "an agent edit and lines dropping a var it needs: the lines are refused",
			change: map[string]string{
				"shop.md":    "Welcome, welcome, to {{.Vars.shop}}.\n",
				"lines.yaml": "L1: {agent: shop}\n",
			},
			want:         map[string]string{"default": def, "shop": "Welcome, welcome, to {{.Vars.shop}}.\n"},
			wantLines:    lines,
			wantRejected: []string{"lines.yaml:1: line L1: shop.md:1: .Vars.shop is not set"},
		},
		{
			name:         "a removed agent still in use stays",
			change:       map[string]string{"shop.md": ""},
			want:         map[string]string{"default": def, "shop": shop},
			wantLines:    lines,
			wantRejected: []string{"shop.md: removed, but lines.yaml still sends calls to agent shop"},
		},
		{
			name:      "a removed agent no longer in use goes",
			change:    map[string]string{"shop.md": "", "lines.yaml": "L1: {}\n"},
			want:      map[string]string{"default": def, "shop": ""},
			wantLines: "L1: {}\n",
		},
		{
			name:      "removing default.md brings back the built-in default",
			change:    map[string]string{"default.md": ""},
			want:      map[string]string{"shop": shop},
			wantLines: lines,
		},
		{
			name:   "removing lines.yaml sends every line to the default agent",
			change: map[string]string{"lines.yaml": ""},
			want:   map[string]string{"default": def, "shop": shop},
		},
		{
			name:         "a broken new agent is not loaded",
			change:       map[string]string{"sales.md": "{{.Nope}}\n"},
			want:         map[string]string{"default": def, "shop": shop, "sales": ""},
			wantLines:    lines,
			wantRejected: []string{"sales.md:1: unknown field .Nope"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, base)
			lv, logs := newLive(t, dir)
			for name, content := range tt.change {
				if content == "" {
					require.NoError(t, os.Remove(filepath.Join(dir, name)))
				} else {
					write(t, filepath.Join(dir, name), content)
				}
			}
			lv.Reload()
			lib := lv.Current()
			for name, content := range tt.want {
				a, ok := lib.Agent(name)
				if content == "" {
					assert.False(t, ok, "agent %s", name)
					continue
				}
				if assert.True(t, ok, "agent %s", name) {
					assert.Equal(t, versionOf(content), a.Version, "agent %s", name)
				}
			}
			if _, ok := tt.want["default"]; !ok {
				assert.True(t, lib.Embedded())
			}
			wantLib, err := prompts.Load(writeDir(t, map[string]string{"default.md": def, "shop.md": shop, "sales.md": "Sell {{.Vars.item}}.\n", "lines.yaml": tt.wantLines}))
			require.NoError(t, err)
			assert.Equal(t, wantLib.Lines(), lib.Lines())

			var msgs []string
			for _, e := range logs.FilterMessage("prompt rejected").All() {
				m := e.ContextMap()
				line := ""
				if m["line"] != int64(0) {
					line = fmt.Sprintf(":%d", m["line"])
				}
				msgs = append(msgs, fmt.Sprintf("%s%s: %s", m["file"], line, m["error"]))
			}
			all := strings.ReplaceAll(strings.Join(msgs, "\n"), dir+"/", "")
			for _, want := range tt.wantRejected {
				assert.Contains(t, all, want)
			}
			if len(tt.wantRejected) == 0 {
				assert.Empty(t, msgs)
			}
		})
	}
}

// TestLiveReloadQuiet checks that reloads change nothing and log nothing when nothing changed,
// and that a file that stays broken is reported once, not on every reload.
func TestLiveReloadQuiet(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"default.md": plainDefault})
	lv, logs := newLive(t, dir)
	before := lv.Current()
	lv.Reload()
	assert.Same(t, before, lv.Current(), "nothing changed: the same library")
	assert.Empty(t, logs.FilterMessage("prompts reloaded").All())

	write(t, filepath.Join(dir, "broken.md"), "{{.Nope}}\n")
	lv.Reload()
	lv.Reload()
	assert.Len(t, logs.FilterMessage("prompt rejected").All(), 1)
	assert.Same(t, before, lv.Current())

	write(t, filepath.Join(dir, "broken.md"), "{{.Nope}} {{.Nada}}\n")
	lv.Reload()
	assert.Len(t, logs.FilterMessage("prompt rejected").All(), 3, "a new problem is reported")
}

func TestLiveReloadDirGone(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"default.md": plainDefault})
	lv, logs := newLive(t, dir)
	before := lv.Current()
	require.NoError(t, os.RemoveAll(dir))
	lv.Reload()
	assert.Same(t, before, lv.Current())
	assert.Len(t, logs.FilterMessage("prompts dir missing: keeping the loaded agents").All(), 1)
}

func TestLiveVersionsBounded(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"default.md": "Version 0.\n"})
	lv, _ := newLive(t, dir)
	const saves = 40
	for i := 1; i <= saves; i++ {
		write(t, filepath.Join(dir, "default.md"), fmt.Sprintf("Version %d.\n", i))
		lv.Reload()
	}
	for i := 0; i <= saves; i++ {
		_, ok := lv.Version(versionOf(fmt.Sprintf("Version %d.\n", i)))
		assert.Equal(t, i > saves-32, ok, "version %d", i)
	}
	cur := lv.Current().Default()
	got, ok := lv.Version(cur.Version)
	require.True(t, ok)
	assert.Same(t, cur, got)
}

func TestNewLiveStrict(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"default.md": "---\ncolour: red\n---\nHi.\n"})
	_, err := prompts.NewLive(dir, zap.NewNop())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `default.md:2: unknown front matter key "colour"`)
}

// TestLiveOnReload: the reload hook reports whether the library changed and how many
// problems were rejected, for every reload that read the directory.
func TestLiveOnReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	write("default.md", "You are the front desk.\n")
	lv, _ := newLive(t, dir)
	type call struct {
		changed  bool
		rejected int
	}
	var got []call
	lv.OnReload(func(changed bool, rejected int) { got = append(got, call{changed, rejected}) })
	lv.Reload()
	write("default.md", "You are the back desk.\n")
	lv.Reload()
	write("default.md", "Broken {{.Vars.\n")
	lv.Reload()
	assert.Equal(t, []call{{false, 0}, {true, 0}, {false, 1}}, got)
}
