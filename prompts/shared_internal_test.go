package prompts

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// At most keepAdopted adopted versions are kept: the index forgets the oldest too, not just
// the list, so a replica meeting many versions from others does not grow without bound.
func TestAdoptKeepsTheLastVersions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"), []byte("You are ours.\n"), 0o600))
	lv, err := NewLive(dir, zap.NewNop())
	require.NoError(t, err)
	own := lv.Current().Default()
	var versions []string
	for i := range keepAdopted + 6 {
		raw := fmt.Appendf(nil, "You are receptionist %d.\n", i)
		a, err := ParseVersion("default", "redis", version(raw), raw)
		require.NoError(t, err)
		lv.Adopt(a)
		versions = append(versions, a.Version)
	}
	for i, v := range versions {
		_, ok := lv.Version(v)
		assert.Equal(t, i >= 6, ok, "version %d of %d", i, len(versions))
	}
	assert.Len(t, *lv.byVersion.Load(), keepAdopted+1, "the adopted versions kept, and our own")
	_, ok := lv.Version(own.Version)
	assert.True(t, ok)
}
