package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

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
line-mounted:
  secret_env: MOUNTED_SECRET
line-blank:
  secret_env: BLANK_SECRET
line-plain:
`), 0o644))
	lib, err := prompts.Load(dir)
	require.NoError(t, err)
	getenv := env(map[string]string{
		"RECEPTION_SECRET": "r-current", "RECEPTION_SECRET_NEXT": "r-next", "ORDERS_SECRET": "o-current",
		"MOUNTED_SECRET": "m-current\n", "BLANK_SECRET": "  ",
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
		{name: "mounted from a file: its newline is not part of it", line: "line-mounted", scope: "line-mounted", want: []string{"m-current"}},
		{name: "variable blank: global, as the start-up warning says", line: "line-blank", scope: "*", want: global},
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

func TestWarnLineSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lines.yaml"), []byte(`
line-short:
  secret_env: SHORT_SECRET
line-unset:
  secret_env: MISSING_SECRET
line-good:
  secret_env: GOOD_SECRET
  secret_next_env: SHORT_NEXT
`), 0o644))
	lib, err := prompts.Load(dir)
	require.NoError(t, err)
	core, logs := observer.New(zapcore.WarnLevel)
	warnLineSecrets(lib, env(map[string]string{
		"SHORT_SECRET": "hunter2", "GOOD_SECRET": hex64, "SHORT_NEXT": "next-one",
	}), zap.New(core))
	var got []string
	for _, e := range logs.AllUntimed() {
		f := e.ContextMap()
		got = append(got, fmt.Sprintf("%s %s %s", f["line_id"], f["variable"], e.Message))
	}
	assert.ElementsMatch(t, []string{
		"line-short SHORT_SECRET line secret is too short to be a signing secret",
		"line-unset MISSING_SECRET line secret variable is not set: verifying with the global secret",
		"line-good SHORT_NEXT line secret is too short to be a signing secret",
	}, got)
	for _, e := range logs.AllUntimed() {
		assert.NotContains(t, fmt.Sprint(e.ContextMap()), "hunter2", "values are never logged")
	}
}
