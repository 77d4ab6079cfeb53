package agent_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
)

// modelTokens splits text roughly the way a BPE model streams it: a word with its leading
// space, each punctuation mark alone, digits in groups of at most three, newlines alone. So
// "at 3:30" comes as " at" " 3" ":" "30", and "$89.50" as " $" "89" "." "50".
func modelTokens(s string) []string {
	const (
		clNewline = iota
		clSpace
		clLetter
		clDigit
		clOther
	)
	class := func(r rune) int {
		switch {
		case r == '\n':
			return clNewline
		case unicode.IsSpace(r):
			return clSpace
		case unicode.IsLetter(r), r == '\'':
			return clLetter
		case unicode.IsDigit(r):
			return clDigit
		}
		return clOther
	}
	var toks []string
	start, body, n := 0, -1, 0 // the current token starts at start; body is its class after a leading space
	for i, r := range s {
		k := class(r)
		join := i > start && (body == clSpace && n == 1 && k >= clLetter || // " word", " 3", " $"
			body == k && (k == clLetter || k == clDigit && n < 3))
		if !join {
			if i > start {
				toks = append(toks, s[start:i])
			}
			start, body, n = i, k, 1
			continue
		}
		if body != k {
			body, n = k, 0
		}
		n++
	}
	if start < len(s) {
		toks = append(toks, s[start:])
	}
	return toks
}

// bytesOf splits s into single bytes, so runes arrive in pieces.
func bytesOf(s string) []string {
	out := make([]string, len(s))
	for i := range len(s) {
		out[i] = s[i : i+1]
	}
	return out
}

// runesOf splits s into single runes.
func runesOf(s string) []string {
	out := make([]string, 0, len(s))
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

// randomPieces splits s at random byte offsets, pieces of 1 to 8 bytes.
func randomPieces(s string, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []string
	for len(s) > 0 {
		n := min(1+rng.IntN(8), len(s))
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// chunkSplits are the ways a table case is streamed; each must give the same lines.
var chunkSplits = []struct {
	name  string
	split func(string) []string
}{
	{"whole", func(s string) []string { return []string{s} }},
	{"model tokens", modelTokens},
	{"runes", runesOf},
	{"bytes", bytesOf},
	{"random", func(s string) []string { return randomPieces(s, uint64(len(s))) }},
}

// chunkAll streams pieces through a new Chunker and returns every line, End(true) included.
func chunkAll(cfg agent.ChunkerConfig, pieces []string) []string {
	c := agent.NewChunker(cfg)
	var lines []string
	for _, p := range pieces {
		lines = append(lines, c.Push(p)...)
	}
	return append(lines, c.End(true)...)
}

func noSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

type chunkCase struct {
	name string
	cfg  agent.ChunkerConfig
	in   string
	want []string
}

var chunkCases = []chunkCase{
	// Rule 1: the first line at the first clause boundary with enough words.
	{
		name: "first line at the first clause with three words",
		in:   "Sure thing, I can help you with that, and I'll need your name first. What is it?",
		want: []string{"Sure thing, I can help you with that,", "and I'll need your name first.", "What is it?"},
	},
	{
		name: "first line at a colon",
		in:   "Here is what we have open: Tuesday morning and Friday afternoon.",
		want: []string{"Here is what we have open:", "Tuesday morning and Friday afternoon."},
	},
	{
		name: "first line at a semicolon",
		in:   "Let me check that; the next one is at noon. Shall I book it?",
		want: []string{"Let me check that;", "the next one is at noon.", "Shall I book it?"},
	},
	{
		name: "first line at a spaced dash, spoken as a comma",
		in:   "Tuesday at noon — that works for us. Great, see you.",
		want: []string{"Tuesday at noon,", "that works for us.", "Great, see you."},
	},
	{
		name: "first line at a spaced hyphen but not inside a word",
		cfg:  agent.ChunkerConfig{NoSymbols: true},
		in:   "Our well-known clinic - open since 1990 - is on Main Street.",
		want: []string{"Our well-known clinic -", "open since 1990 - is on Main Street."},
	},
	{
		name: "a separator hyphen becomes a comma",
		in:   "Our well-known clinic - open since 1990 - is on Main Street.",
		want: []string{"Our well-known clinic,", "open since 1990, is on Main Street."},
	},
	{
		name: "a short opening clause waits for more words",
		in:   "Sure, no problem. See you then.",
		want: []string{"Sure, no problem.", "See you then."},
	},
	{
		name: "a complete sentence of two words goes out first",
		in:   "Of course. We have Tuesday open.",
		want: []string{"Of course.", "We have Tuesday open."},
	},
	{
		name: "a one-word sentence joins the next",
		in:   "Yes. We have Tuesday open. Great! See you.",
		want: []string{"Yes. We have Tuesday open.", "Great! See you."},
	},
	{
		name: "an answer of one word is said",
		in:   "Yes.",
		want: []string{"Yes."},
	},
	{
		name: "FirstMinWords is configurable",
		cfg:  agent.ChunkerConfig{FirstMinWords: 2},
		in:   "Sure thing, we have Tuesday open.",
		want: []string{"Sure thing,", "we have Tuesday open."},
	},
	{
		name: "later lines end at sentences, not clauses",
		in:   "Okay, that works for me. Your visit is on Tuesday, at noon, with Dr. Patel, in room four. Bring your card.",
		want: []string{"Okay, that works for me.", "Your visit is on Tuesday, at noon, with Dr. Patel, in room four.", "Bring your card."},
	},
	{
		name: "exclamation and question marks end sentences",
		in:   "Great news! What time works? I'm free all day.",
		want: []string{"Great news!", "What time works?", "I'm free all day."},
	},
	{
		name: "mixed marks and closing quotes stay with the sentence",
		in:   `You said "Tuesday?!" Then Tuesday it is. She said "fine." (Really, truly.) All done.`,
		want: []string{`You said "Tuesday?!"`, "Then Tuesday it is.", `She said "fine."`, "(Really, truly.)", "All done."},
	},
	{
		name: "unicode sentence marks",
		in:   "¿Qué hora le va bien? ¡Muy bien! Hasta el martes‼ Bis dann⁉ Sehr gut.",
		want: []string{"¿Qué hora le va bien?", "¡Muy bien!", "Hasta el martes‼", "Bis dann⁉", "Sehr gut."},
	},
	{
		name: "full-width stops need no space",
		in:   "好的。我们周二有空！您方便吗？",
		want: []string{"好的。", "我们周二有空！", "您方便吗？"},
	},
	{
		name: "a sentence over MaxPhrase splits at its last clause",
		cfg:  agent.ChunkerConfig{MaxPhrase: 40},
		in:   "Okay then. We have openings on Monday morning, Tuesday afternoon, Wednesday evening, and Thursday at noon. Which one?",
		want: []string{"Okay then.", "We have openings on Monday morning,", "Tuesday afternoon, Wednesday evening,", "and Thursday at noon.", "Which one?"},
	},
	{
		name: "a long sentence without a clause stays whole",
		cfg:  agent.ChunkerConfig{MaxPhrase: 20},
		in:   "Okay then. We have openings on Monday morning and Tuesday afternoon. Which one?",
		want: []string{"Okay then.", "We have openings on Monday morning and Tuesday afternoon.", "Which one?"},
	},
	{
		name: "the default breath splits a rambling sentence",
		in: "Okay then. We have a slot on one of the days that week, " +
			strings.Repeat("we have a slot on one of the days that week, ", 5) + "and that is all.",
		want: []string{
			"Okay then.",
			"We have a slot on one of the days that week, we have a slot on one of the days that week,",
			"we have a slot on one of the days that week, we have a slot on one of the days that week,",
			"we have a slot on one of the days that week, we have a slot on one of the days that week, and that is all.",
		},
	},

	// Rule 2: never split numbers, times, prices, phone numbers, addresses, abbreviations.
	{
		name: "times with a.m. and p.m. mid-sentence, and a.m. ending one",
		in:   "We have Tuesday at 3:30 p.m. or Wednesday at 10 a.m. Which works better?",
		want: []string{"We have Tuesday at 3:30 p.m. or Wednesday at 10 a.m.", "Which works better?"},
	},
	{
		name: "a.m. before a weekday does not end the sentence",
		in:   "We're open from 9 a.m. Monday to Friday and until noon on Saturday.",
		want: []string{"We're open from 9 a.m. Monday to Friday and until noon on Saturday."},
	},
	{
		name: "a.m. before a time zone or a bracket does not end the sentence",
		in:   "The call is at 10 A.M. EST tomorrow. Or at 9 a.m. (Eastern) on Friday. Does that work?",
		want: []string{"The call is at 10 A.M. EST tomorrow.", "Or at 9 a.m. (Eastern) on Friday.", "Does that work?"},
	},
	{
		name: "decimals and prices",
		in:   "A cleaning is $89.50. The whitening kit is $1,299.99 with 3.5 hours of care. Shall I book?",
		want: []string{"A cleaning is $89.50.", "The whitening kit is $1,299.99 with 3.5 hours of care.", "Shall I book?"},
	},
	{
		name: "a number ends a sentence",
		in:   "We close at 5. Then the line is closed.",
		want: []string{"We close at 5.", "Then the line is closed."},
	},
	{
		name: "phone numbers",
		in:   "You can call us at +1 (415) 555-0123. Or text 555-0199. We answer all day.",
		want: []string{"You can call us at +1 (415) 555-0123.", "Or text 555-0199.", "We answer all day."},
	},
	{
		name: "e-mail addresses and URLs",
		in:   "Send it to jane.doe@example.com. Or book at example.com/book?ref=call or https://x.y/z. Thank you!",
		want: []string{"Send it to jane.doe@example.com.", "Or book at example.com/book?ref=call or https://x.y/z.", "Thank you!"},
	},
	{
		name: "titles before names",
		in:   "Your appointment is with Dr. Patel. Mr. Brown, Mrs. Diaz and Ms. Lee are off. Meet at St. Mary's. Prof. Kim too.",
		want: []string{"Your appointment is with Dr. Patel.", "Mr. Brown, Mrs. Diaz and Ms. Lee are off.", "Meet at St. Mary's.", "Prof. Kim too."},
	},
	{
		name: "Latin abbreviations before a capital",
		in:   "Pick a weekday, e.g. Monday or Tuesday. The rest, i.e. Saturday, is closed. It is Giants vs. Dodgers. It takes approx. 20 minutes.",
		want: []string{"Pick a weekday,", "e.g. Monday or Tuesday.", "The rest, i.e. Saturday, is closed.", "It is Giants vs. Dodgers.", "It takes approx. 20 minutes."},
	},
	{
		name: "etc. mid-sentence and at the end",
		in:   "Bring your ID, insurance card, etc. and arrive early. We sell brushes, floss, etc. Anything else?",
		want: []string{"Bring your ID,", "insurance card, etc. and arrive early.", "We sell brushes, floss, etc.", "Anything else?"},
	},
	{
		name: "No. before a number, and No. as an answer",
		in:   "No. Your ticket is No. 5 in the queue. It is room no. 12 today.",
		want: []string{"No. Your ticket is No. 5 in the queue.", "It is room no. 12 today."},
	},
	{
		name: "single initials",
		in:   "It was written by J. R. R. Tolkien. Great book.",
		want: []string{"It was written by J. R. R. Tolkien.", "Great book."},
	},
	{
		name: "dotted abbreviations end only before a capital",
		in:   "She moved to the U.S. in May. Then she moved to the U.K. It rained.",
		want: []string{"She moved to the U.S. in May.", "Then she moved to the U.K.", "It rained."},
	},
	{
		name: "ellipsis inside a sentence and ending one",
		in:   "Let me see… yes, Tuesday is free. Hmm... Wednesday too. Well... maybe not.",
		want: []string{"Let me see… yes,", "Tuesday is free.", "Hmm... Wednesday too.", "Well... maybe not."},
	},
	{
		name: "a lowercase word after a stop does not start a sentence",
		in:   "The fee is 20 dollars. and it is due today.",
		want: []string{"The fee is 20 dollars. and it is due today."},
	},
	{
		name: "punctuation alone never makes a line",
		in:   `Okay then. "…" Tuesday then.`,
		want: []string{"Okay then.", `"…" Tuesday then.`},
	},

	// Rule 3: cleaning, streamed.
	{
		name: "markdown list with bold and italics",
		in:   "**Sure!** Here are the options:\n\n1. **Tuesday** at 3 p.m.\n2. *Wednesday* at 10 a.m.\n\nWhich one?",
		want: []string{"Sure! Here are the options:", "Tuesday at 3 p.m.", "Wednesday at 10 a.m.", "Which one?"},
	},
	{
		name: "headings, quotes and bullets",
		in:   "## Our hours\n> We open at 9 a.m. sharp.\n- Weekdays: until 5 p.m.\n* Saturdays: until noon.\n+ Sundays: closed.",
		want: []string{"Our hours.", "We open at 9 a.m. sharp.", "Weekdays: until 5 p.m.", "Saturdays: until noon.", "Sundays: closed."},
	},
	{
		name: "a code fence is dropped whole",
		in:   "Sure. Here is how:\n```python\nprint('Hello. World!')\nx = {1: 2}\n```\nThat prints a greeting.",
		want: []string{"Sure. Here is how:", "That prints a greeting."},
	},
	{
		name: "a JSON object is dropped whole",
		in:   `You're booked. {"slot": "Tuesday 3:30 p.m.", "notes": "say \"hi\" } ok", "ok": true} See you then.`,
		want: []string{"You're booked.", "See you then."},
	},
	{
		name: "a JSON array is dropped whole, a bracketed word is not",
		in:   "Here you go: [\n  {\"day\": \"Mon\"},\n  {\"day\": \"Tue\"}\n] Pick one [please].",
		want: []string{"Here you go:", "Pick one please."},
	},
	{
		name: "links keep their text, images go",
		in:   "See [our opening hours](https://example.com/hours_(2024)). ![logo](logo.png) We open at nine.",
		want: []string{"See our opening hours.", "We open at nine."},
	},
	{
		name: "emoji and symbols go, degrees stay",
		in:   "Great news 🎉! You're booked 👍🏽. It will be 72°F and sunny ☀️ ✅ → see you! 👨‍👩‍👧",
		want: []string{"Great news!", "You're booked.", "It will be 72°F and sunny see you!"},
	},
	{
		name: "inline code, strike-through and underscores",
		in:   "Type `yes` to confirm, ~~or~~ not. Your user name is jane_doe and __that__ is _it_. Wait ~5 minutes.",
		want: []string{"Type yes to confirm,", "or not.", "Your user name is jane_doe and that is it.", "Wait about 5 minutes."},
	},
	{
		name: "newlines and runs of whitespace collapse",
		in:   "We open\n\nat   nine.\tSee\u00a0you\r\nthen.",
		want: []string{"We open at nine.", "See you then."},
	},
	{
		name: "a line empty after cleaning is not emitted",
		in:   "🎉🎉 ```\ncode only\n``` {\"a\": 1}",
		want: nil,
	},
	{
		name: "end of stream flushes a sentence without a stop",
		in:   "Thanks for calling",
		want: []string{"Thanks for calling"},
	},
}

func TestChunkerLines(t *testing.T) {
	t.Parallel()
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The expectation itself loses nothing and adds nothing.
			assert.Equal(t, noSpace(agent.Shape(tc.cfg, tc.in)), noSpace(strings.Join(tc.want, "")), "want holds Shape(in)")
			for _, sp := range chunkSplits {
				got := chunkAll(tc.cfg, sp.split(tc.in))
				assert.Equal(t, tc.want, got, "split into %s: %q", sp.name, sp.split(tc.in))
			}
		})
	}
}

// chunkStep is one Push and the lines it must return at once.
type chunkStep struct {
	push string
	want []string
}

func TestChunkerPushHoldsUntilCertain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []chunkStep
		end   []string // End(true)
	}{
		{
			name: "a time split after its stop",
			steps: []chunkStep{
				{push: "We open at 3"}, {push: "."}, {push: "30"}, {push: " p"}, {push: "."}, {push: "m"}, {push: "."},
				{push: " Tomorrow"}, {push: " is", want: []string{"We open at 3.30 p.m."}},
			},
			end: []string{"Tomorrow is"},
		},
		{
			name: "a price split after its stop",
			steps: []chunkStep{
				{push: "It is $89."}, {push: "50"}, {push: " per visit."},
				{push: " Shall", want: []string{"It is $89.50 per visit."}},
			},
			end: []string{"Shall"},
		},
		{
			name: "a stop waits for the next word, not just the space",
			steps: []chunkStep{
				{push: "We open at nine."}, {push: " "}, {push: "O", want: []string{"We open at nine."}}, {push: "n Saturdays"},
			},
			end: []string{"On Saturdays"},
		},
		{
			name: "an abbreviation waits for the word after it",
			steps: []chunkStep{
				{push: "You will see Dr."}, {push: " Patel"}, {push: " at 10 a.m."}, {push: " Mon"}, {push: "day"},
				{push: " works", want: nil}, {push: "?"}, {push: " Yes", want: []string{"You will see Dr. Patel at 10 a.m. Monday works?"}},
			},
			end: []string{"Yes"},
		},
		{
			name: "a.m. with a capital after it ends the sentence once the word is whole",
			steps: []chunkStep{
				{push: "Come at 10 a.m."}, {push: " Wh"}, {push: "ich", want: nil},
				{push: " day", want: []string{"Come at 10 a.m."}},
			},
			end: []string{"Which day"},
		},
		{
			name: "the first line leaves at its clause as soon as the next word shows",
			steps: []chunkStep{
				{push: "Okay"}, {push: ","}, {push: " let"}, {push: " me"}, {push: " check"}, {push: ","},
				{push: " one", want: []string{"Okay, let me check,"}}, {push: " moment"},
			},
			end: []string{"one moment"},
		},
		{
			name: "a code fence over many deltas never leaks",
			steps: []chunkStep{
				{push: "Sure thing."}, {push: " ``"}, {push: "`json\n{\"a\": "}, {push: "\"Hello. World\"}\n"},
				{push: "Done. Next"}, {push: "\n``"}, {push: "`"}, {push: " That", want: []string{"Sure thing."}}, {push: " is it."},
				{push: " Bye"}, {push: " now", want: []string{"That is it."}},
			},
			end: []string{"Bye now"},
		},
		{
			name: "a JSON blob over many deltas never leaks",
			steps: []chunkStep{
				{push: "Booked"}, {push: " {"}, {push: "\"slot\": \"Tue"}, {push: ". 3 p.m.\", \"x\": [1"}, {push: ", {\"y\": \"}\"}]"},
				{push: "} for"}, {push: " you."}, {push: " See", want: []string{"Booked for you."}},
			},
			end: []string{"See"},
		},
		{
			name: "bold split over deltas",
			steps: []chunkStep{
				{push: "*"}, {push: "*"}, {push: "Tues"}, {push: "day"}, {push: "*"}, {push: "*"}, {push: " works"}, {push: "."},
				{push: " Okay", want: []string{"Tuesday works."}},
			},
			end: []string{"Okay"},
		},
		{
			name: "an emoji split inside its bytes",
			steps: []chunkStep{
				{push: "Great news \xf0\x9f"}, {push: "\x8e"}, {push: "\x89! Yes", want: []string{"Great news!"}}, {push: ", I can help you."},
			},
			end: []string{"Yes, I can help you."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := agent.NewChunker(agent.ChunkerConfig{})
			for i, s := range tt.steps {
				got := c.Push(s.push)
				if len(s.want) == 0 {
					assert.Empty(t, got, "step %d: Push(%q)", i, s.push)
				} else {
					assert.Equal(t, s.want, got, "step %d: Push(%q)", i, s.push)
				}
			}
			assert.Equal(t, tt.end, c.End(true))
		})
	}
}

func TestChunkerCut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		push []string
		want string
		rest []string // End(true) after the cut
	}{
		{
			name: "up to the last whole word",
			push: []string{"Sure", " I", " can", " help"},
			want: "Sure I",
			rest: []string{"can help"},
		},
		{
			name: "a word with a break after it is whole",
			push: []string{"Let", " me", " look", " at", " the", " calendar", ".", " "},
			want: "Let me look at the calendar.",
		},
		{
			name: "a finished sentence is whole before its break",
			push: []string{"Let", " me", " look", " at", " the", " calendar", "."},
			want: "Let me look at the calendar.",
		},
		{
			name: "never a lone word: Of | course",
			push: []string{"Of", " course"},
			want: "",
			rest: []string{"Of course"},
		},
		{
			name: "never leaves a lone word",
			push: []string{"Well", " of", " course"},
			want: "",
			rest: []string{"Well of course"},
		},
		{
			name: "not a number that may go on",
			push: []string{"We", " open", " at", " 3", "."},
			want: "",
			rest: []string{"We open at 3."},
		},
		{
			name: "nothing whole yet",
			push: []string{"Hel", "lo"},
			want: "",
			rest: []string{"Hello"},
		},
		{
			name: "not inside a time",
			push: []string{"We", " can", " do", " 3", ":", "30", " p"},
			want: "We can do",
			rest: []string{"3:30 p"},
		},
		{
			name: "not between a number and what may be a.m.",
			push: []string{"Come", " in", " at", " 10", " pm", " to"},
			want: "Come in at",
			rest: []string{"10 pm to"},
		},
		{
			name: "not inside a phone number",
			push: []string{"Call", " +1", " (415)", " 555", "-0123", " or", " text"},
			want: "Call +1 (415) 555-0123",
			rest: []string{"or text"},
		},
		{
			name: "not inside a phone number still coming",
			push: []string{"Please", " call", " +1", " (415)", " 555"},
			want: "Please call",
			rest: []string{"+1 (415) 555"},
		},
		{
			name: "not after a title",
			push: []string{"Please", " see", " Dr", ".", " Smith"},
			want: "Please see",
			rest: []string{"Dr. Smith"},
		},
		{
			name: "not after an initial",
			push: []string{"Written", " by", " J", ".", " R", ".", " Tol"},
			want: "Written by",
			rest: []string{"J. R. Tol"},
		},
		{
			name: "a price is one word",
			push: []string{"It", " costs", " $", "1", ",", "299", ".", "99", " in", " total"},
			want: "It costs $1,299.99",
			rest: []string{"in total"},
		},
		{
			name: "nothing of a code block",
			push: []string{"```", "json\n{\"a\": 1} and more words"},
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := agent.NewChunker(agent.ChunkerConfig{})
			for _, p := range tt.push {
				require.Empty(t, c.Push(p), "no line before the cut")
			}
			assert.Equal(t, tt.want, c.Cut())
			assert.Equal(t, tt.rest, c.End(true))
		})
	}
}

func TestChunkerCutEndsFirstLineRule(t *testing.T) {
	t.Parallel()
	c := agent.NewChunker(agent.ChunkerConfig{})
	require.Empty(t, c.Push("Let me see what"))
	require.Equal(t, "Let me", c.Cut())
	// Later lines end at sentences: this clause has words enough for a first line.
	assert.Empty(t, c.Push(" we have on Tuesday, and Wednesday too"))
	assert.Empty(t, c.Push(". Which"), "a later line waits for two words after it")
	assert.Equal(t, "see what we have on Tuesday, and Wednesday too.", c.Cut(), "Cut says a finished line first")
	assert.Equal(t, "", c.Cut(), "a lone incomplete word is not cut")
	assert.Equal(t, []string{"Which"}, c.End(true))
}

func TestChunkerEndIncomplete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string // every line, from Push and End(false)
	}{
		{name: "drops the unfinished sentence", in: "We open at nine. On Saturdays we", want: []string{"We open at nine."}},
		{name: "keeps a final question", in: "That works. Does Tuesday suit you?", want: []string{"That works.", "Does Tuesday suit you?"}},
		{name: "keeps a final full stop after a word", in: "Okay then. We open at nine.", want: []string{"Okay then.", "We open at nine."}},
		{name: "drops a number that may go on", in: "Okay then. The price is $89.", want: []string{"Okay then."}},
		{name: "drops a time that may go on", in: "Okay then. We open at 9 a.m.", want: []string{"Okay then."}},
		{name: "drops a title", in: "Okay then. Your doctor is Dr.", want: []string{"Okay then."}},
		{name: "a held line is complete", in: "Okay then. We open at nine. On Saturdays we", want: []string{"Okay then.", "We open at nine."}},
		{name: "drops an unclosed code block", in: "Sure. ```python\nprint('Hi. There.')", want: []string{"Sure."}},
		{name: "drops an answer with no sentence", in: "Sure, let me", want: nil},
		{name: "keeps a first clause already sent", in: "Well, let me see, we have", want: []string{"Well, let me see,"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := agent.NewChunker(agent.ChunkerConfig{})
			var got []string
			for _, p := range modelTokens(tt.in) {
				got = append(got, c.Push(p)...)
			}
			got = append(got, c.End(false)...)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestChunkerPending(t *testing.T) {
	t.Parallel()
	c := agent.NewChunker(agent.ChunkerConfig{})
	assert.False(t, c.Pending(), "new")
	c.Push("Hello")
	assert.True(t, c.Pending(), "a word")
	assert.Equal(t, []string{"Hello"}, c.End(true))
	assert.False(t, c.Pending(), "after End")
	c.Push("*")
	assert.True(t, c.Pending(), "a marker waiting for what follows")
	c.End(true)
	c.Push("```json\n{\"a\": 1")
	assert.False(t, c.Pending(), "code is never spoken")
	c.Push("}\n``` Done")
	assert.True(t, c.Pending())
	assert.Equal(t, []string{"Done"}, c.End(true))
}

func TestChunkerIsReusableAfterEnd(t *testing.T) {
	t.Parallel()
	c := agent.NewChunker(agent.ChunkerConfig{})
	c.Push("Sure, this is the first answer of several. And ```code")
	c.End(false)
	var got []string
	for _, p := range modelTokens("Okay, here is the second one, fresh. Bye.") {
		got = append(got, c.Push(p)...)
	}
	got = append(got, c.End(true)...)
	assert.Equal(t, []string{"Okay, here is the second one,", "fresh. Bye."}, got, "the first-line rule applies again")
}

func TestClean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain text", in: "We open at nine.", want: "We open at nine."},
		{name: "bold and italics", in: "**Tuesday** and *Wednesday* and __Friday__ and _Sunday_", want: "Tuesday and Wednesday and Friday and Sunday"},
		{name: "bold inside a word", in: "un**believ**able", want: "unbelievable"},
		{name: "lone asterisks between numbers are times", in: "5 * 3 is 5*3, price*", want: "5 times 3 is 5 times 3, price"},
		{name: "underscores inside words stay", in: "first_name and A_1", want: "first_name and A_1"},
		{name: "strike-through, and a tilde is about", in: "~~Monday~~ Tuesday, in ~10 minutes, a ~ b", want: "Monday Tuesday, in about 10 minutes, a b"},
		{name: "inline code", in: "Type `yes` or ``no``.", want: "Type yes or no."},
		{name: "heading", in: "# Hours\n### Weekdays\n#1 in town", want: "Hours. Weekdays. number 1 in town"},
		{name: "bullets", in: "- one\n* two\n+ three\n  - nested\n-5 degrees", want: "one, two, three, nested. -5 degrees"},
		{name: "numbered list", in: "1. first\n2) second\n10. tenth\n3.5 hours", want: "first, second, tenth. 3.5 hours"},
		{name: "quotes", in: "> quoted\n>> nested\n> - listed", want: "quoted nested. listed"},
		{name: "rules", in: "above\n---\n***\nBelow", want: "above. Below"},
		{name: "a paragraph before a lower-case word is a space", in: "above\n\nbelow", want: "above below"},
		{name: "inline list", in: "Options: 1. Basic - $89 2. Deep - $149 3) Window", want: "Options: Basic, $89. Deep, $149. Window"},
		{name: "not an inline list", in: "Step 1. Go to room 2. Then wait.", want: "Step 1. Go to room 2. Then wait."},
		{name: "table", in: "| Day | Hours |\n|:---|---:|\n| Mon | 9-5 |\n| Sat | closed |\n\nOk", want: "Day, Hours. Mon, 9-5. Sat, closed. Ok"},
		{name: "ranges", in: "9 a.m. - 5 p.m., Mon – Fri, 10–15 min, $50-$80, Paris–Lyon, pages 3 — 4", want: "9 a.m. to 5 p.m., Mon to Fri, 10 to 15 min, $50 to $80, Paris to Lyon, pages 3 to 4"},
		{name: "separators", in: "Basic - $89 and Deep – $149 — or none -- really", want: "Basic, $89 and Deep, $149, or none, really"},
		{name: "more, less, number", in: "for > 5 years, <3 days, #2, #sale, a > b, ≈ 4", want: "for more than 5 years, less than 3 days, number 2, sale, a b, about 4"},
		{name: "stray brackets", in: "ok) (fine) done)", want: "ok (fine) done"},
		{name: "link", in: "See [the hours](https://x.y/h?a=1) now.", want: "See the hours now."},
		{name: "bracketed text without a target", in: "Say [yes] or [1]", want: "Say yes or 1"},
		{name: "image", in: "Logo: ![alt text](a.png) done", want: "Logo: done"},
		{name: "code fence", in: "Before\n```go\nfunc main() {}\n```\nafter", want: "Before after"},
		{name: "unclosed code fence drops the rest", in: "Before ```sh\nrm -rf /", want: "Before"},
		{name: "JSON object", in: `a {"k": "v}", "n": {"m": [1, 2]}} b`, want: "a b"},
		{name: "JSON array", in: `a [{"k": 1}] b ["x", "y"] c [ [1] ] d`, want: "a b c d"},
		{name: "unclosed JSON drops the rest", in: `Done. {"a": "b`, want: "Done."},
		{name: "empty object", in: "Empty {} ok.", want: "Empty ok."},
		{name: "braces in prose are not a blob", in: "Use {name} here. Open { brace, and more words.", want: "Use name here. Open brace, and more words."},
		{name: "emoji between words", in: "I❤NY 🎉🎉 ok 👍🏽.", want: "I NY ok."},
		{name: "flags, keycaps and ZWJ sequences", in: "🇺🇸 1️⃣ 👨‍👩‍👧 #️⃣", want: "1"},
		{name: "symbols read aloud stay", in: "72°F, 20℃, № 5, €5, $5, 50%", want: "72°F, 20℃, № 5, €5, $5, 50%"},
		{name: "symbols not read aloud go, a bullet starts an item", in: "Acme™ ©2024 ® → ★ •item", want: "Acme 2024. item"},
		{name: "controls and format characters", in: "a\u200db\u00adc\x00d\u200be\ufeff", want: "abcd e"},
		{name: "invalid UTF-8", in: "ok\xff\xfe done", want: "ok done"},
		{name: "whitespace", in: "  a\n\n b\t\tc\u00a0\u2003d  ", want: "a b c d"},
		{name: "a blank line is a phrase break", in: "We open\n\nSee you", want: "We open. See you"},
		{name: "no space before punctuation left by a dropped emoji", in: "booked 👍. Great 🎉!", want: "booked. Great!"},
		{name: "not at a line start, markers are shaped", in: "a - b # c > d 1. e", want: "a, b c d 1. e"},
		{name: "nothing", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, agent.Clean(tt.in))
		})
	}
}

// answer400 is a realistic answer of about 400 characters.
const answer400 = "Sure, I can help you book that. We have openings on Tuesday at 3:30 p.m. and Wednesday " +
	"at 10 a.m., and Dr. Patel is in on both days. A standard cleaning is $89.50, and the first " +
	"check-up is free. You can also book online at example.com/book, or call us at +1 (415) " +
	"555-0123. Please bring your insurance card, a photo ID, and a list of your medicines. " +
	"Which day works better for you?"

// BenchmarkChunker streams a 400-character answer as about 100 tokens through a new
// Chunker, as one turn does.
func BenchmarkChunker(b *testing.B) {
	toks := modelTokens(answer400)
	b.ReportMetric(float64(len(toks)), "tokens")
	b.ReportAllocs()
	for b.Loop() {
		c := agent.NewChunker(agent.ChunkerConfig{})
		for _, t := range toks {
			c.Push(t)
		}
		c.End(true)
	}
}

// BenchmarkChunkerLongAnswer checks that Push stays linear: a long answer without a single
// boundary, pushed token by token.
func BenchmarkChunkerLongAnswer(b *testing.B) {
	toks := modelTokens(strings.Repeat("and then we have another slot open ", 200))
	b.ReportAllocs()
	for b.Loop() {
		c := agent.NewChunker(agent.ChunkerConfig{})
		for _, t := range toks {
			c.Push(t)
		}
		c.End(true)
	}
}

// FuzzChunker streams arbitrary text split at arbitrary byte offsets. It checks what the
// Chunker guarantees for any input:
//
//   - it never panics;
//   - no line is empty or has a space at either end;
//   - the lines, with Cut called at arbitrary points, hold Clean of the input: the same
//     runes in the same order, nothing lost or repeated (spaces aside, since a full-width
//     stop ends a line without a space);
//   - without Cut, the lines do not depend on the split: whole, byte by byte, rune by rune
//     and at random offsets give the same lines;
//   - End(false) returns a prefix of what End(true) would have.
func FuzzChunker(f *testing.F) {
	for i, tc := range chunkCases {
		f.Add(tc.in, uint64(i), uint8(3))
	}
	f.Add(answer400, uint64(7), uint8(5))
	f.Add(answerMarkdown, uint64(3), uint8(2))
	for i, sc := range loadCorpus(f) {
		f.Add(sc.In, uint64(i)*7, uint8(i%5))
	}
	f.Add("at 3.\xf0\x9f\x8e\x89 30 p.m. **x** [a](b) ``` {", uint64(1), uint8(1))
	f.Fuzz(func(t *testing.T, in string, seed uint64, cutEvery uint8) {
		// The speech settings come from the seed: every combination is fuzzed.
		cfg := agent.ChunkerConfig{
			Ordinals: seed&1 != 0, SpellLinks: seed&2 != 0, NoLists: seed&4 != 0, NoSymbols: seed&8 != 0,
			Languages: [][]string{nil, {"es"}, {"de", "en"}, {"fr"}}[seed>>4&3],
		}
		clean := agent.Shape(cfg, in)
		require.Equal(t, strings.TrimSpace(clean), clean, "Shape trims")
		require.NotContains(t, clean, "  ", "Shape collapses spaces")
		require.NotContains(t, clean, "\n", "Shape has no phrase marks")

		whole := chunkAll(cfg, []string{in})
		for _, l := range whole {
			require.NotEmpty(t, l)
			require.Equal(t, strings.TrimSpace(l), l, "line %q has spaces at an end", l)
		}
		checkPhrases(t, cfg, whole)
		require.Equal(t, noSpace(clean), noSpace(strings.Join(whole, "")), "lines hold Shape(in)")
		require.Equal(t, whole, chunkAll(cfg, bytesOf(in)), "bytes")
		require.Equal(t, whole, chunkAll(cfg, runesOf(in)), "runes")
		pieces := randomPieces(in, seed)
		require.Equal(t, whole, chunkAll(cfg, pieces), "pieces %q", pieces)

		// With cuts.
		cutCfg := cfg
		cutCfg.FirstMinWords, cutCfg.MaxPhrase = int(seed%5), int(seed%97)
		c := agent.NewChunker(cutCfg)
		var lines []string
		for i, p := range pieces {
			lines = append(lines, c.Push(p)...)
			if cutEvery > 0 && i%int(cutEvery) == 0 {
				if s := c.Cut(); s != "" {
					lines = append(lines, s)
				}
			}
		}
		lines = append(lines, c.End(true)...)
		for _, l := range lines {
			require.NotEmpty(t, l)
			require.Equal(t, strings.TrimSpace(l), l, "line %q has spaces at an end", l)
		}
		require.Equal(t, noSpace(clean), noSpace(strings.Join(lines, "")), "lines with cuts hold Shape(in)")

		// A broken stream says a prefix of the answer.
		c = agent.NewChunker(cfg)
		lines = lines[:0]
		for _, p := range pieces {
			lines = append(lines, c.Push(p)...)
		}
		lines = append(lines, c.End(false)...)
		require.True(t, strings.HasPrefix(noSpace(clean), noSpace(strings.Join(lines, ""))), "End(false) says a prefix")
		require.True(t, utf8.ValidString(strings.Join(lines, "")))
	})
}

// answerMarkdown is an answer in the chat style the shaper reshapes most: a list, a table,
// emphasis, ranges, symbols.
const answerMarkdown = "**Sure!** Here are our options:\n\n1. **Basic cleaning** - $89.99\n2. Deep cleaning – $149.50 (takes ~2 hours)\n3. Whitening - $250\n\n" +
	"| Day | Hours |\n|---|---|\n| Mon–Fri | 9 a.m. - 5 p.m. |\n| Sat. | 10–2 |\n\n" +
	"Your first visit could be on Tue., Dec. 3rd at 3:30 p.m. with Dr. Patel. Which option would you like?"

// BenchmarkShaper streams a markdown answer of about 400 characters through a new Chunker,
// token by token as a model sends it: the shaper's cost on the turn's hot path, with the
// default settings and with every option on.
func BenchmarkShaper(b *testing.B) {
	toks := modelTokens(answerMarkdown)
	for _, bc := range []struct {
		name string
		cfg  agent.ChunkerConfig
	}{
		{"default", agent.ChunkerConfig{}},
		{"all options", agent.ChunkerConfig{Ordinals: true, SpellLinks: true, Languages: []string{"en", "es"}}},
		{"shaper off", agent.ChunkerConfig{NoLists: true, NoSymbols: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportMetric(float64(len(toks)), "tokens")
			b.SetBytes(int64(len(answerMarkdown)))
			b.ReportAllocs()
			for b.Loop() {
				c := agent.NewChunker(bc.cfg)
				for _, t := range toks {
					c.Push(t)
				}
				c.End(true)
			}
		})
	}
}

// FuzzShaperKeepsWords streams prose (letters, spaces, newlines and the marks ". , ! ? '")
// through the shaper and chunker under the speech settings that add no words of their own
// (spelled links and ordinals do, and a dash between days becomes "to"): whatever it
// reshapes, it loses, repeats and reorders no letter; the phrases hold exactly the letters
// of the answer.
func FuzzShaperKeepsWords(f *testing.F) {
	f.Add([]byte("Sure. We have Tuesday open, and Wednesday too! Is that ok?"), uint64(0))
	f.Add([]byte("Mon. Tue.\n\nOne\nTwo three\nDr. Lee, e.g. no. O'Neil!"), uint64(5))
	const alphabet = "abcdefghijklmnopqrstuvwxyzADEMNOST     \n.,!?'"
	f.Fuzz(func(t *testing.T, raw []byte, seed uint64) {
		in := make([]byte, len(raw))
		for i, b := range raw {
			if strings.IndexByte(alphabet, b) < 0 {
				b = alphabet[int(b)%len(alphabet)] // the seeds read as written
			}
			in[i] = b
		}
		cfg := agent.ChunkerConfig{
			NoLists: seed&4 != 0, NoSymbols: seed&8 != 0,
			Languages: [][]string{nil, {"es"}, {"de", "en"}, {"fr"}}[seed>>4&3],
		}
		letters := func(s string) string {
			return strings.Map(func(r rune) rune {
				if unicode.IsLetter(r) {
					return r
				}
				return -1
			}, s)
		}
		lines := chunkAll(cfg, randomPieces(string(in), seed))
		require.Equal(t, letters(string(in)), letters(strings.Join(lines, " ")), "lines %q", lines)
		checkPhrases(t, cfg, lines)
	})
}
