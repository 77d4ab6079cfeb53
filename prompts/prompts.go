// Package prompts loads the agents' system prompts from prompt files. An operator tunes the
// agent by editing these files; a built-in default agent is embedded so the brain runs from a
// bare binary. It imports none of callbrain's other packages.
package prompts

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed default.md
var embeddedDefault string

// DefaultName is the agent used for lines that name no other.
const DefaultName = "default"

// Agent is one agent definition.
type Agent struct {
	Name   string
	System string // the system prompt
	// Version is a short content hash, logged on every turn so a transcript can be traced to
	// the exact prompt that produced it.
	Version string
	// Source is the file it came from, or "embedded".
	Source string
}

// Library holds the loaded agents.
type Library struct {
	agents map[string]Agent
}

// Load reads every *.md file in dir as an agent named after the file. A missing dir, or one
// without default.md, gets the embedded default agent; Embedded reports that.
func Load(dir string) (*Library, error) {
	l := &Library{agents: make(map[string]Agent)}
	paths, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return nil, fmt.Errorf("list prompts in %s: %w", dir, err)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read prompt %s: %w", p, err)
		}
		a, err := parse(strings.TrimSuffix(filepath.Base(p), ".md"), p, string(raw))
		if err != nil {
			return nil, err
		}
		l.agents[a.Name] = a
	}
	if _, ok := l.agents[DefaultName]; !ok {
		a, err := parse(DefaultName, "embedded", embeddedDefault)
		if err != nil {
			return nil, err
		}
		l.agents[DefaultName] = a
	}
	return l, nil
}

func parse(name, source, raw string) (Agent, error) {
	text := strings.TrimSpace(raw)
	if text == "" {
		return Agent{}, fmt.Errorf("prompt %s: empty system prompt", source)
	}
	sum := sha256.Sum256([]byte(text))
	return Agent{Name: name, System: text, Version: hex.EncodeToString(sum[:6]), Source: source}, nil
}

// Default returns the default agent.
func (l *Library) Default() Agent { return l.agents[DefaultName] }

// Embedded reports whether the default agent is the built-in one.
func (l *Library) Embedded() bool { return l.agents[DefaultName].Source == "embedded" }

// Names lists the loaded agents.
func (l *Library) Names() []string {
	names := make([]string, 0, len(l.agents))
	for n := range l.agents {
		names = append(names, n)
	}
	return names
}
