package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/callbrain/callbrain/test/saperly"
)

// espeak is the local text-to-speech engine say --voice speaks with (Debian: espeak-ng).
const espeak = "espeak-ng"

// voice speaks every line the caller hears into a WAV file of its own, as Saperly's voice
// says each line with its own intonation, so a person can listen to how an answer sounds:
// DIR/01-01.wav is the first answer's first line. DIR/phrases.txt lists each file with its
// text.
type voice struct {
	dir, name string
	answers   int
}

func newVoice(dir, name string) (*voice, error) {
	if _, err := exec.LookPath(espeak); err != nil {
		return nil, fmt.Errorf("say --voice needs %s on the PATH (Debian and Ubuntu: apt-get install espeak-ng): %w", espeak, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("say --voice: %w", err)
	}
	return &voice{dir: dir, name: name}, nil
}

// speak writes one WAV file per line of an answer and returns their paths.
func (v *voice) speak(ctx context.Context, lines []saperly.Line) ([]string, error) {
	v.answers++
	index, err := os.OpenFile(filepath.Join(v.dir, "phrases.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("say --voice: %w", err)
	}
	var paths []string
	for i, l := range lines {
		name := fmt.Sprintf("%02d-%02d.wav", v.answers, i+1)
		path := filepath.Join(v.dir, name)
		// The text goes in on stdin, so a line starting with "-" is never read as an option.
		cmd := exec.CommandContext(ctx, espeak, "-v", v.name, "-w", path, "--stdin")
		cmd.Stdin = strings.NewReader(l.Text)
		if out, err := cmd.CombinedOutput(); err != nil {
			_ = index.Close()
			return nil, fmt.Errorf("speak line %q with %s: %w: %s", l.Text, espeak, err, strings.TrimSpace(string(out)))
		}
		if _, err := fmt.Fprintf(index, "%s\t%s\n", name, l.Text); err != nil {
			_ = index.Close()
			return nil, fmt.Errorf("say --voice: %w", err)
		}
		paths = append(paths, path)
	}
	if err := index.Close(); err != nil {
		return nil, fmt.Errorf("say --voice: %w", err)
	}
	return paths, nil
}
