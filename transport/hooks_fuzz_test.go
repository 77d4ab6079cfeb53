package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callbrain/callbrain/agent"
)

// FuzzDecodeHooks: the receivers' decoders never panic, and an accepted event always names
// its call and its dedupe key.
func FuzzDecodeHooks(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "hooks", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for name, decode := range map[string]func([]byte, time.Time) (agent.HookEvent, error){
			"salpre": DecodeSalpre, "itellico": DecodeItellico, "speaknode": DecodeSpeakNode,
		} {
			ev, err := decode(body, testNow)
			if err != nil {
				if _, ok := err.(*DecodeError); !ok {
					t.Fatalf("%s: error %v is not a DecodeError", name, err)
				}
				continue
			}
			if ev.DedupeKey == "" || (ev.CallID == "" && strings.HasPrefix(ev.Type, "conversation.")) {
				t.Fatalf("%s: accepted %q without a key or call id: %+v", name, body, ev)
			}
			if name != "itellico" && ev.CallID == "" {
				t.Fatalf("%s: accepted %q without a call id", name, body)
			}
		}
	})
}
