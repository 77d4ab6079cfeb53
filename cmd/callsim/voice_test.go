package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
)

// wavSeconds reads a RIFF WAVE file's format and data chunks and returns how long it plays.
func wavSeconds(t *testing.T, path string) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(raw), 12, "%s is too short for a WAV header", path)
	require.Equal(t, "RIFF", string(raw[:4]), path)
	require.Equal(t, "WAVE", string(raw[8:12]), path)
	var rate, channels, bits uint32
	for p := 12; p+8 <= len(raw); {
		id, size := string(raw[p:p+4]), binary.LittleEndian.Uint32(raw[p+4:p+8])
		body := raw[p+8:]
		switch id {
		case "fmt ":
			require.GreaterOrEqual(t, len(body), 16)
			channels = uint32(binary.LittleEndian.Uint16(body[2:4]))
			rate = binary.LittleEndian.Uint32(body[4:8])
			bits = uint32(binary.LittleEndian.Uint16(body[14:16]))
		case "data":
			require.NotZero(t, rate*channels*bits, "fmt chunk before data")
			n := min(int(size), len(body)) // espeak-ng may leave the size of a stream unset
			if size == 0 || size == 0xffffffff {
				n = len(body)
			}
			// The samples must not all be silence.
			require.NotEqual(t, 0, bytes.Count(body[:n], []byte{0})-n, "%s is silent", path)
			return time.Duration(float64(n) / float64(rate*channels*bits/8) * float64(time.Second))
		}
		p += 8 + int(size) + int(size&1)
	}
	t.Fatalf("%s has no data chunk", path)
	return 0
}

func TestSayVoiceWritesAWAVPerLine(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)
	dir := filepath.Join(t.TempDir(), "voice")

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--voice", dir, "I'd like to book a cleaning", "Tuesday")

	require.NoError(t, err)
	assert.Contains(t, out, "voice: 2 WAV files in "+dir)
	for _, name := range []string{"01-01.wav", "01-02.wav", "02-01.wav", "02-02.wav"} {
		d := wavSeconds(t, filepath.Join(dir, name))
		assert.Greater(t, d, 500*time.Millisecond, "%s holds a spoken phrase", name)
	}
	index, err := os.ReadFile(filepath.Join(dir, "phrases.txt"))
	require.NoError(t, err)
	assert.Equal(t, "01-01.wav\tSure, I can help you book that.\n01-02.wav\tWhich day works better?\n"+
		"02-01.wav\tSure, I can help you book that.\n02-02.wav\tWhich day works better?\n", string(index))
}

func TestSayVoiceIntoAFileIsAnError(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)
	file := filepath.Join(t.TempDir(), "taken")
	require.NoError(t, os.WriteFile(file, nil, 0o644))

	_, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--voice", file, "hello")

	require.ErrorContains(t, err, "say --voice: mkdir "+file)
	assert.Empty(t, b.received(), "nothing is sent when the voice cannot be written")
}

// Not parallel: it empties PATH for the process.
func TestSayVoiceWithoutEspeakIsAnError(t *testing.T) {
	b := newBrain(t, saperly.DevSecret)
	t.Setenv("PATH", t.TempDir())

	_, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--voice", t.TempDir(), "hello")

	require.ErrorContains(t, err, "say --voice needs espeak-ng on the PATH (Debian and Ubuntu: apt-get install espeak-ng)")
	assert.Empty(t, b.received())
}
