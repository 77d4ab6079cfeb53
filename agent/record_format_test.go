package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/callscript"
)

// TestRecordedScriptsParse: the recorder writes the call-script format without importing it
// (server code may not depend on test/), so this checks that package test/callscript reads
// what it writes, field by field, with the caller's text and without.
func TestRecordedScriptsParse(t *testing.T) {
	t.Parallel()
	for _, keepText := range []bool{true, false} {
		data := agent.RecordedTestCall(t, keepText)
		sc, err := callscript.Parse("recorded.yaml", data)
		require.NoError(t, err, "%s", data)

		assert.Equal(t, "call-1", sc.Name)
		assert.Equal(t, "line-1", sc.LineID)
		assert.Equal(t, "+15550000001", sc.From)
		assert.Equal(t, "+15550000002", sc.To)
		assert.Equal(t, "inbound", sc.Direction)
		require.NotNil(t, sc.Recorded)
		assert.Equal(t, time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), sc.Recorded.At.UTC())
		assert.Equal(t, "orders", sc.Recorded.Agent)
		assert.Equal(t, "v1", sc.Recorded.PromptVersion)

		var kinds []callscript.Kind
		for _, turn := range sc.Turns {
			kinds = append(kinds, turn.Kind)
		}
		require.Equal(t, []callscript.Kind{
			callscript.KindStart, callscript.KindSay, callscript.KindSay, callscript.KindSay, callscript.KindSay,
			callscript.KindSay, callscript.KindStatus, callscript.KindHangup,
		}, kinds)

		say1, say2, say3, say4, say5 := sc.Turns[1], sc.Turns[2], sc.Turns[3], sc.Turns[4], sc.Turns[5]
		assert.Equal(t, 999*time.Millisecond, say1.Think)
		assert.True(t, say1.Duplicate)
		require.NotNil(t, say1.Answer)
		require.Len(t, say1.Answer.Lines, 3)
		assert.Equal(t, callscript.AnswerLine{Text: "One moment.", At: 1200 * time.Millisecond, Hold: true}, say1.Answer.Lines[0])
		assert.Equal(t, 2*time.Second, say1.Answer.Lines[1].At)
		require.Len(t, say1.Answer.Tools, 1)
		assert.Equal(t, "order_status", say1.Answer.Tools[0].Name)

		require.NotNil(t, say2.BargeIn)
		assert.Equal(t, 1, say2.BargeIn.AfterLines)
		require.NotNil(t, say2.BargeIn.Heard)
		require.NotNil(t, say3.Retry)
		assert.Equal(t, callscript.Retry{When: callscript.RetryAfterAnswer, After: 200 * time.Millisecond}, *say3.Retry)
		require.NotNil(t, say4.BargeIn)
		assert.Equal(t, 900*time.Millisecond, say4.BargeIn.Late)
		require.NotNil(t, say5.Retry)
		assert.Equal(t, callscript.RetryWhileStreaming, say5.Retry.When)
		assert.True(t, say5.Answer.EndedCall)

		assert.Equal(t, "call_incoming", sc.Turns[6].Event)
		assert.Equal(t, "completed", sc.Turns[7].Fields["status"])

		if keepText {
			assert.Equal(t, "Where is my order 12345?", say1.Text)
			assert.Equal(t, "We have Tuesday", *say2.BargeIn.Heard)
			assert.Equal(t, `{"order":"12345"}`, say1.Answer.Tools[0].Args)
			assert.Equal(t, "I found your order 12345.", say1.Answer.Lines[1].Text)
		} else {
			assert.Equal(t, "<utterance 1, 24 chars>", say1.Text)
			assert.Equal(t, "<heard, 15 chars>", *say2.BargeIn.Heard)
			assert.Empty(t, say1.Answer.Tools[0].Args)
			assert.Equal(t, "<answer 1 line 2, 25 chars>", say1.Answer.Lines[1].Text)
		}
	}
}
