package agent

// TEMPORARY naive chunker: replaced by the real one (helper in progress).

import "strings"

type ChunkerConfig struct {
	FirstMinWords int
	MaxPhrase     int
}

type Chunker struct {
	buf   strings.Builder
	first bool
	cfg   ChunkerConfig
}

func NewChunker(cfg ChunkerConfig) *Chunker { return &Chunker{cfg: cfg} }

func (c *Chunker) Push(delta string) []string {
	c.buf.WriteString(delta)
	s := c.buf.String()
	var out []string
	for {
		i := strings.IndexAny(s, ".!?")
		if i < 0 || i+1 >= len(s) || s[i+1] != ' ' {
			break
		}
		out = append(out, strings.TrimSpace(s[:i+1]))
		s = s[i+1:]
	}
	c.buf.Reset()
	c.buf.WriteString(s)
	return out
}

func (c *Chunker) Cut() string {
	s := c.buf.String()
	i := strings.LastIndex(s, " ")
	if i <= 0 {
		return ""
	}
	c.buf.Reset()
	c.buf.WriteString(s[i:])
	return strings.TrimSpace(s[:i])
}

func (c *Chunker) Pending() bool { return strings.TrimSpace(c.buf.String()) != "" }

func (c *Chunker) End(complete bool) []string {
	s := strings.TrimSpace(c.buf.String())
	c.buf.Reset()
	if s == "" {
		return nil
	}
	if !complete {
		i := strings.LastIndexAny(s, ".!?")
		if i < 0 {
			return nil
		}
		s = s[:i+1]
	}
	return []string{s}
}

func Clean(s string) string { return strings.TrimSpace(s) }
