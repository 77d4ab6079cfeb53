package callscript

import (
	"strings"
	"time"

	"github.com/callbrain/callbrain/agent"
)

// Replies indexes the answers recorded in a set of scripts by what the caller said, so a
// stand-in model (mockllm -scripts) can answer each utterance as it was answered when the
// call was recorded.
type Replies struct {
	byCall map[string]*Answer // every utterance of the call so far, normalised, joined by \n
	byLast map[string]*Answer // the last utterance alone
}

// NewReplies indexes every say turn with a recorded answer. When two scripts recorded
// different answers to the same words, the first (in the order given) wins.
func NewReplies(scripts []*Script) *Replies {
	r := &Replies{byCall: map[string]*Answer{}, byLast: map[string]*Answer{}}
	for _, s := range scripts {
		var said []string
		for i := range s.Turns {
			t := &s.Turns[i]
			if t.Kind != KindSay {
				continue
			}
			said = append(said, Normalize(t.Text))
			if t.Answer == nil || len(t.Answer.Lines) == 0 && len(t.Answer.Tools) == 0 {
				continue
			}
			key := strings.Join(said, "\n")
			if _, ok := r.byCall[key]; !ok {
				r.byCall[key] = t.Answer
			}
			if _, ok := r.byLast[said[len(said)-1]]; !ok {
				r.byLast[said[len(said)-1]] = t.Answer
			}
		}
	}
	return r
}

// Len returns how many distinct utterances have a recorded answer.
func (r *Replies) Len() int { return len(r.byLast) }

// Find returns the answer recorded for the caller's last words. said is everything the
// caller said in the call so far, oldest first. The answer recorded in the same conversation
// (the same words before) is preferred; otherwise any answer recorded for the last words.
func (r *Replies) Find(said []string) (*Answer, bool) {
	if len(said) == 0 {
		return nil, false
	}
	norm := make([]string, len(said))
	for i, s := range said {
		norm[i] = Normalize(s)
	}
	if a, ok := r.byCall[strings.Join(norm, "\n")]; ok {
		return a, true
	}
	a, ok := r.byLast[norm[len(norm)-1]]
	return a, ok
}

// Words returns what the model said in a recorded answer: its lines without the holding
// phrases (the brain adds those itself), joined with spaces.
func (a *Answer) Words() string {
	var words []string
	for _, l := range a.Lines {
		if !l.Hold {
			words = append(words, l.Text)
		}
	}
	return strings.Join(words, " ")
}

// Pace returns the delay before the first token and between tokens that make a model
// streaming a's words (split as agent.DemoTokens splits them) complete its first and last
// spoken lines when they were recorded: the brain speaks a line once its phrase is complete.
// It is an approximation: the brain's own overhead is counted as the model's.
func (a *Answer) Pace() (firstToken, perToken time.Duration) {
	var first, last *AnswerLine
	firstTokens, tokens := 0, 0
	for i := range a.Lines {
		l := &a.Lines[i]
		if l.Hold {
			continue
		}
		tokens += len(agent.DemoTokens(l.Text))
		if first == nil {
			first, firstTokens = l, tokens
		}
		last = l
	}
	if first == nil {
		return 0, 0
	}
	if tokens > firstTokens && last.At > first.At {
		perToken = (last.At - first.At) / time.Duration(tokens-firstTokens)
	}
	firstToken = first.At - time.Duration(firstTokens-1)*perToken
	return max(firstToken, 0), perToken
}
