package prompts_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/prompts"
)

// A version loaded by replica A is rebuilt on replica B from its file alone, and B finds it
// by version from then on, across B's own reloads.
func TestShareVersion(t *testing.T) {
	t.Parallel()
	const v1 = "You are the first receptionist. Caller: {{.Caller}}.\n"
	const v2 = "You are the second receptionist.\n"
	dirA, dirB := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dirA, "default.md"), []byte(v1), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dirB, "default.md"), []byte(v2), 0o600))
	a, _ := newLive(t, dirA)
	b, _ := newLive(t, dirB)

	pinned := a.Current().Default()
	assert.Equal(t, []byte(v1), pinned.Raw())
	_, ok := b.Version(pinned.Version)
	require.False(t, ok, "B never loaded A's version")

	got, err := prompts.ParseVersion(pinned.Name, "redis", pinned.Version, pinned.Raw())
	require.NoError(t, err)
	assert.Equal(t, pinned.Version, got.Version)
	text, err := got.Render(prompts.CallData{Caller: "+15550001"})
	require.NoError(t, err)
	assert.Contains(t, text, "You are the first receptionist. Caller: +15550001.")

	b.Adopt(got)
	found, ok := b.Version(pinned.Version)
	require.True(t, ok)
	assert.Same(t, got, found)
	assert.Equal(t, "You are the second receptionist.\n", string(b.Current().Default().Raw()), "adopting pins nothing new as current")

	require.NoError(t, os.WriteFile(filepath.Join(dirB, "default.md"), []byte(v2+"Be brief.\n"), 0o600))
	b.Reload()
	_, ok = b.Version(pinned.Version)
	assert.True(t, ok, "an adopted version survives a reload")
}

// A stored file that does not hash to its version, or does not parse, is refused with a
// clear error.
func TestParseVersionRejects(t *testing.T) {
	t.Parallel()
	good := []byte("You are helpful.\n")
	a, err := prompts.ParseVersion("default", "redis", "000000000000", good)
	require.ErrorIs(t, err, prompts.ErrVersionMismatch)
	assert.Nil(t, a)

	bad := []byte("Hello {{.Caller\n")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"), good, 0o600))
	lv, _ := newLive(t, dir)
	want := lv.Current().Default().Version
	_, err = prompts.ParseVersion("default", "redis", want, bad)
	require.ErrorIs(t, err, prompts.ErrVersionMismatch, "a changed file is caught by its hash first")

	empty := []byte("")
	_, err = prompts.ParseVersion("default", "redis", versionOf(""), empty)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "empty")
	_, err = prompts.ParseVersion("default", "redis", versionOf(string(bad)), bad)
	require.Error(t, err, "a template that does not parse")
}
