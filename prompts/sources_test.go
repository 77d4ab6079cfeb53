package prompts_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/prompts"
)

func TestParseSources(t *testing.T) {
	t.Parallel()
	good := `
salpre:
  headers:
    - {name: X-Api-Key, value_env: SALPRE_KEY}
    - {name: X-Api-Key, value_env: SALPRE_KEY_NEXT}
itellico:
  secret_env: ITELLICO_SECRET
  encoding: base64
  max_skew: 2m
speaknode:
  secret_env: SPEAKNODE_SECRET
  signature_header: X-Signature
dedupe_ttl: 48h
`
	s, err := prompts.ParseSources("sources.yaml", []byte(good))
	require.NoError(t, err)
	require.NotNil(t, s.Salpre)
	assert.Len(t, s.Salpre.Headers, 2)
	assert.Equal(t, "base64", s.Itellico.Encoding)
	assert.Equal(t, 2*time.Minute, s.Itellico.MaxSkew)
	assert.Equal(t, "X-Signature", s.SpeakNode.SignatureHeader)
	assert.Equal(t, 48*time.Hour, s.DedupeTTL)

	cases := []struct{ name, yaml, want string }{
		{"unknown key", "salpre:\n  header: []\n", "field header not found"},
		{"unknown platform", "vapi: {}\n", "field vapi not found"},
		{"salpre without headers", "salpre: {}\n", "salpre.headers: give at least one"},
		{"a secret instead of a name", "speaknode:\n  secret_env: 'abc def+/='\n", "speaknode.secret_env must be the NAME"},
		{"no secret_env", "itellico: {encoding: hex}\n", "itellico.secret_env is required"},
		{"bad encoding", "itellico: {secret_env: A, encoding: base32}\n", `itellico.encoding "base32": want hex or base64`},
		{"speaknode timestamp", "speaknode: {secret_env: A, timestamp_header: X-T}\n", "SpeakNode signs the body only"},
		{"bad header name", "salpre:\n  headers: [{name: 'X Key', value_env: A}]\n", "salpre.headers[0].name must be an HTTP header name"},
		{"bad duration", "dedupe_ttl: soon\n", "cannot unmarshal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := prompts.ParseSources("sources.yaml", []byte(tc.yaml))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "sources.yaml")
		})
	}

	// A pasted signing secret that happens to look like a variable name is refused, and the
	// error (which is logged) never repeats it.
	const pasted = "a3f9c2d84e1b7f60a9c3d2e1f0b4a7c6d5e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2"
	_, err = prompts.ParseSources("sources.yaml", []byte("speaknode:\n  secret_env: "+pasted+"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "looks like a secret")
	assert.NotContains(t, err.Error(), pasted)
}

func TestLoadSourcesAbsentOrEmpty(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := prompts.LoadSources(dir)
	require.NoError(t, err)
	assert.Nil(t, s, "no file: nothing configured")
	require.NoError(t, os.WriteFile(filepath.Join(dir, prompts.SourcesFile), []byte("# nothing yet\n"), 0o600))
	s, err = prompts.LoadSources(dir)
	require.NoError(t, err)
	assert.Nil(t, s.Salpre)
}
