package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/transport"
)

func TestLoadHooks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.yaml"), []byte(`
salpre:
  headers: [{name: X-Api-Key, value_env: SALPRE_KEY}]
itellico: {secret_env: IT_SECRET, secret_next_env: IT_NEXT}
speaknode: {secret_env: SN_SECRET}
`), 0o600))
	env := map[string]string{"SALPRE_KEY": "k1", "IT_SECRET": "s1", "IT_NEXT": "s2", "SN_SECRET": "s3"}
	h, ttl, err := loadHooks(dir, func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, transport.DefaultHookDedupeTTL, ttl)
	assert.Equal(t, []transport.Header{{Name: "X-Api-Key", Value: "k1"}}, h.Salpre.Headers)
	assert.Equal(t, []string{"s1", "s2"}, h.Itellico.Secrets)
	assert.Equal(t, transport.DefaultItellicoSignatureHeader, h.Itellico.SignatureHeader, "documented default")
	assert.Equal(t, transport.DefaultItellicoTimestampHeader, h.Itellico.TimestampHeader)
	assert.Equal(t, transport.EncodingHex, h.SpeakNode.Encoding)
	assert.Equal(t, transport.DefaultSpeakNodeHeader, h.SpeakNode.SignatureHeader)

	delete(env, "SN_SECRET")
	_, _, err = loadHooks(dir, func(k string) string { return env[k] })
	require.Error(t, err)
	assert.Equal(t, "sources.yaml: speaknode.secret_env names SN_SECRET, which is not set", err.Error())
	assert.NotContains(t, err.Error(), "s1")

	h, _, err = loadHooks(t.TempDir(), func(string) string { return "" })
	require.NoError(t, err)
	assert.Nil(t, h.Salpre, "no sources.yaml: every receiver off")
}
