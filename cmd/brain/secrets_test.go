package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/prompts"
)

func TestLineSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lines.yaml"), []byte(`
line-rotating:
  secret_env: RECEPTION_SECRET
  secret_next_env: RECEPTION_SECRET_NEXT
line-own:
  secret_env: ORDERS_SECRET
line-unset:
  secret_env: MISSING_SECRET
line-plain:
`), 0o644))
	lib, err := prompts.Load(dir)
	require.NoError(t, err)
	getenv := env(map[string]string{
		"RECEPTION_SECRET": "r-current", "RECEPTION_SECRET_NEXT": "r-next", "ORDERS_SECRET": "o-current",
	})
	global := []string{"global"}
	for _, tc := range []struct {
		name, line string
		scope      string
		want       []string
	}{
		{name: "current and staged next during a rotation", line: "line-rotating", scope: "line-rotating", want: []string{"r-current", "r-next"}},
		{name: "the line's own secret", line: "line-own", scope: "line-own", want: []string{"o-current"}},
		{name: "variable not set: global", line: "line-unset", scope: "*", want: global},
		{name: "listed without a secret: global", line: "line-plain", scope: "*", want: global},
		{name: "not listed: global", line: "line-other", scope: "*", want: global},
		{name: "no line_id in the body: global", line: "", scope: "*", want: global},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope, secrets := lineSecrets(lib, tc.line, global, getenv)
			assert.Equal(t, tc.want, secrets)
			assert.Equal(t, tc.scope, scope, "the signing scope")
		})
	}
}
