package callscript_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/callscript"
)

func TestReplies(t *testing.T) {
	t.Parallel()
	a := parse(t, `
turns:
  - say: Hi
    answer: {lines: [{text: "Hello from A.", at: 100ms}]}
  - say: Thanks, bye!
    answer: {lines: [{text: "Bye from A.", at: 100ms}]}
`)
	b := parse(t, `
turns:
  - say: Where is my order?
    answer: {lines: [{text: "Which order?", at: 100ms}]}
  - say: thanks bye
    answer: {lines: [{text: "Bye from B.", at: 100ms}]}
  - say: No answer recorded
`)
	r := callscript.NewReplies([]*callscript.Script{a, b})
	assert.Equal(t, 3, r.Len())
	tests := []struct {
		name string
		said []string
		want string // "" for no answer
	}{
		{"first words", []string{"hi"}, "Hello from A."},
		{"same conversation wins", []string{"Where is my order", "Thanks, bye."}, "Bye from B."},
		{"other conversation", []string{"Hi", "Thanks, bye"}, "Bye from A."},
		{"unknown history, known words: the first script's", []string{"Something else", "THANKS BYE"}, "Bye from A."},
		{"unknown words", []string{"What?"}, ""},
		{"turn without an answer", []string{"Where is my order?", "thanks bye", "No answer recorded"}, ""},
		{"nothing said", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := r.Find(tt.said)
			assert.Equal(t, tt.want != "", ok)
			if ok {
				assert.Equal(t, tt.want, got.Words())
			}
		})
	}
}

func TestAnswerPace(t *testing.T) {
	t.Parallel()
	first, second := "Sure, I can help.", "Which day works?"
	a := &callscript.Answer{Lines: []callscript.AnswerLine{
		{Text: "One moment.", At: 50 * time.Millisecond, Hold: true},
		{Text: first, At: 800 * time.Millisecond},
		{Text: second, At: 1300 * time.Millisecond},
	}}
	assert.Equal(t, first+" "+second, a.Words())
	ttft, per := a.Pace()
	n1, n2 := len(agent.DemoTokens(first)), len(agent.DemoTokens(second))
	require.Positive(t, per)
	assert.Equal(t, 500*time.Millisecond/time.Duration(n2), per)
	// The first line is complete when its last token is out, the last line likewise.
	assert.Equal(t, 800*time.Millisecond, ttft+time.Duration(n1-1)*per)
	assert.InDelta(t, float64(1300*time.Millisecond), float64(ttft+time.Duration(n1+n2-1)*per), float64(time.Duration(n2)))

	// A first line recorded sooner than the pace of the rest allows: no negative delay.
	fast := &callscript.Answer{Lines: []callscript.AnswerLine{{Text: first, At: time.Millisecond}, {Text: second, At: time.Second}}}
	ttft, _ = fast.Pace()
	assert.Zero(t, ttft)

	one := &callscript.Answer{Lines: []callscript.AnswerLine{{Text: "Hi.", At: 300 * time.Millisecond}}}
	ttft, per = one.Pace()
	assert.Equal(t, 300*time.Millisecond, ttft)
	assert.Zero(t, per)
	ttft, per = (&callscript.Answer{}).Pace()
	assert.Zero(t, ttft+per)
}
