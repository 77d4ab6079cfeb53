package agent_test

import (
	"os"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/callbrain/callbrain/agent"
)

// speechCase is one answer of agent/testdata/speech/corpus.yaml.
type speechCase struct {
	Name   string   `yaml:"name"`
	Source string   `yaml:"source"`
	Rules  []string `yaml:"rules"`
	Speech struct {
		Languages  []string `yaml:"languages"`
		Lists      *bool    `yaml:"lists"`
		Symbols    *bool    `yaml:"symbols"`
		Ordinals   bool     `yaml:"ordinals"`
		SpellLinks bool     `yaml:"spell_links"`
		Breath     int      `yaml:"breath"`
	} `yaml:"speech"`
	In   string   `yaml:"in"`
	Want []string `yaml:"want"`
}

func (sc speechCase) config() agent.ChunkerConfig {
	s := sc.Speech
	return agent.ChunkerConfig{
		MaxPhrase: s.Breath, Languages: s.Languages, Ordinals: s.Ordinals, SpellLinks: s.SpellLinks,
		NoLists: s.Lists != nil && !*s.Lists, NoSymbols: s.Symbols != nil && !*s.Symbols,
	}
}

func loadCorpus(t testing.TB) []speechCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/speech/corpus.yaml")
	require.NoError(t, err)
	var doc struct {
		Cases []speechCase `yaml:"cases"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.NotEmpty(t, doc.Cases)
	return doc.Cases
}

// speechRules are the shaping rules of docs/speech.md; the corpus covers each.
var speechRules = []string{
	"list", "inline-list", "ordinals", "heading", "table", "quote", "rule", "emphasis", "inline-code",
	"code-block", "json", "emoji", "symbols", "tilde", "separator-dash", "range", "stray-bracket",
	"parentheses", "quotes", "title", "latin", "weekday", "month", "unit", "street", "clock",
	"decimal", "price", "time", "date", "phone", "email", "url", "spell-links", "lone-word",
	"breath", "language-es", "language-de", "language-fr", "switched-off",
}

// tokenSizes are the ways a corpus answer is streamed: models send a character, a few
// characters, a word or the whole answer at a time.
var tokenSizes = []struct {
	name  string
	split func(string) []string
}{
	{"one character", runesOf},
	{"about four characters", func(s string) []string { return runeChunks(s, 4) }},
	{"one word", words},
	{"whole", func(s string) []string { return []string{s} }},
}

// runeChunks splits s into pieces of n runes.
func runeChunks(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		i, k := 0, 0
		for i < len(s) && k < n {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
			k++
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

// words splits s before each space, so a word comes with the space before it, as models send.
func words(s string) []string {
	var out []string
	for len(s) > 0 {
		i := strings.IndexAny(s[1:], " \n")
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

func TestSpeechCorpus(t *testing.T) {
	t.Parallel()
	cases := loadCorpus(t)
	covered := map[string]bool{}
	for _, sc := range cases {
		require.NotEmpty(t, sc.Source, "case %q names its source", sc.Name)
		for _, r := range sc.Rules {
			require.Contains(t, speechRules, r, "case %q: unknown rule", sc.Name)
			covered[r] = true
		}
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			cfg := sc.config()
			require.NotEmpty(t, sc.Want, "got %q", chunkAll(cfg, []string{sc.In}))
			assert.Equal(t, noSpace(agent.Shape(cfg, sc.In)), noSpace(strings.Join(sc.Want, "")), "want holds Shape(in)")
			for _, ts := range tokenSizes {
				assert.Equal(t, sc.Want, chunkAll(cfg, ts.split(sc.In)), "streamed %s at a time", ts.name)
			}
			checkPhrases(t, cfg, sc.Want)
		})
	}
	for _, r := range speechRules {
		assert.True(t, covered[r], "no corpus case covers rule %q", r)
	}
}

// checkPhrases checks what holds for every answer's phrases: none is empty or a lone word
// (unless it is the whole answer, or a last word right after the first phrase, which goes
// out before the rest is known), and none runs past the breath without a reason (no clause
// break inside the allowance).
func checkPhrases(t *testing.T, cfg agent.ChunkerConfig, lines []string) {
	t.Helper()
	for i, l := range lines {
		require.NotEmpty(t, strings.TrimSpace(l), "phrase %d is empty", i)
		if len(lines) > 1 && wordCount(l) < 2 && !(i == 1 && len(lines) == 2) {
			t.Errorf("phrase %d %q is a lone word in %q", i, l, lines)
		}
		assert.NotContains(t, l, "\n")
	}
}

// wordCount counts words as a phrase holds them: tokens with a letter or a digit, and each
// character of a script written without spaces.
func wordCount(s string) int {
	n := 0
	for _, f := range strings.Fields(s) {
		word := false
		for _, r := range f {
			switch {
			case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana):
				n++
			case !word && (unicode.IsLetter(r) || unicode.IsDigit(r)):
				word = true
				n++
			}
		}
	}
	return n
}
