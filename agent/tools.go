package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// EndCallTool is the built-in tool an agent with end_call enabled may call: once its goodbye
// has been heard in full, the brain hangs up through the carrier's API.
const EndCallTool = prompts.EndCallTool

// endCallDef is how end_call is offered to the model.
var endCallDef = ToolDef{
	Name: EndCallTool,
	Description: "End the phone call. Use it only when the caller has nothing more to ask, " +
		"in the same answer as a short goodbye that you say first. The call ends after the goodbye is heard.",
	Parameters: json.RawMessage(`{"type":"object","properties":{"reason":{"type":"string","description":"why the call ends"}}}`),
}

// Limits on what one tool call may cost a turn.
const (
	// maxToolResult bounds the tool answer fed to the model: a tool that returns a page of
	// HTML must not blow the context window or the turn's latency.
	maxToolResult = 16 << 10
	// maxToolRounds bounds the model → tool → model loop of one turn; past it the model is
	// asked to answer with what it has.
	maxToolRounds = 3
)

// toolDefs lists the functions offered to the model for agent ag: its HTTP tools, and
// end_call when the agent may end calls and the brain can hang up.
func (a *Agent) toolDefs(ag *prompts.Agent) []ToolDef {
	var defs []ToolDef
	for _, t := range ag.Settings.Tools {
		defs = append(defs, ToolDef{Name: t.Name, Description: t.Description, Parameters: t.Parameters})
	}
	if ag.Settings.EndCall && a.control != nil {
		defs = append(defs, endCallDef)
	}
	return defs
}

// findTool returns ag's HTTP tool called name.
func findTool(ag *prompts.Agent, name string) (prompts.Tool, bool) {
	for _, t := range ag.Settings.Tools {
		if t.Name == name {
			return t, true
		}
	}
	return prompts.Tool{}, false
}

// callTool runs one HTTP tool call and returns what the model is told: the tool's JSON
// answer, or a JSON object with an "error" the model can put into words. It never fails:
// a broken tool must become a spoken sentence, not silence. key is sent as Idempotency-Key,
// so a tool that honours it never repeats a side effect for the same call, event and index.
func (a *Agent) callTool(ctx context.Context, tool prompts.Tool, call ToolCall, key string) string {
	timeout := tool.Timeout
	if timeout <= 0 {
		timeout = prompts.DefaultToolTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	args := map[string]any{}
	if strings.TrimSpace(call.Args) != "" {
		if err := json.Unmarshal([]byte(call.Args), &args); err != nil {
			return toolError("the arguments were not a JSON object: " + err.Error())
		}
	}
	req, err := a.toolRequest(ctx, tool, args)
	if err != nil {
		return toolError("the tool is misconfigured")
	}
	req.Header.Set("Idempotency-Key", key)
	for header, env := range tool.Headers {
		if a.cfg.Getenv != nil {
			if v := a.cfg.Getenv(env); v != "" {
				req.Header.Set(header, v)
			}
		}
	}
	res, err := a.http.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return toolError(fmt.Sprintf("the tool did not answer within %s", timeout))
		}
		return toolError("the tool could not be reached")
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxToolResult+1))
	if err != nil {
		return toolError("the tool's answer was cut off")
	}
	if len(body) > maxToolResult {
		return toolError("the tool's answer was too long")
	}
	body = bytes.TrimSpace(body)
	if res.StatusCode < 200 || res.StatusCode > 299 {
		out := map[string]any{"error": fmt.Sprintf("the tool answered HTTP %d", res.StatusCode), "status": res.StatusCode}
		if json.Valid(body) && len(body) > 0 {
			out["body"] = json.RawMessage(body)
		}
		return mustJSON(out)
	}
	if len(body) == 0 {
		return `{"ok":true}`
	}
	if json.Valid(body) {
		return string(body)
	}
	return mustJSON(map[string]string{"result": string(body)})
}

// toolRequest builds the HTTP request for a call: arguments as a JSON body, or as query
// parameters for GET and DELETE.
func (a *Agent) toolRequest(ctx context.Context, tool prompts.Tool, args map[string]any) (*http.Request, error) {
	method := strings.ToUpper(tool.Method)
	if method == "" {
		method = http.MethodPost
	}
	if method == http.MethodGet || method == http.MethodDelete {
		u, err := url.Parse(tool.URL)
		if err != nil {
			return nil, fmt.Errorf("tool %s url: %w", tool.Name, err)
		}
		q := u.Query()
		for k, v := range args {
			if s, ok := v.(string); ok {
				q.Set(k, s)
			} else {
				q.Set(k, mustJSON(v))
			}
		}
		u.RawQuery = q.Encode()
		return http.NewRequestWithContext(ctx, method, u.String(), nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, tool.URL, strings.NewReader(mustJSON(args)))
	if err != nil {
		return nil, fmt.Errorf("tool %s request: %w", tool.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func toolError(msg string) string { return mustJSON(map[string]string{"error": msg}) }

// mustJSON encodes values that always encode (maps of strings, numbers and raw JSON).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return `{"error":"unencodable result"}`
	}
	return string(b)
}

// CallControl ends calls through the carrier.
type CallControl interface {
	// HangUp ends the call. An error means the call may still be up.
	HangUp(ctx context.Context, callID string) error
}

// SaperlyAPI is CallControl on Saperly's REST API (PROTOCOL §1.9).
type SaperlyAPI struct {
	base   string
	key    string
	client *http.Client
}

var _ CallControl = (*SaperlyAPI)(nil)

// DefaultSaperlyAPI is Saperly's API base URL.
const DefaultSaperlyAPI = "https://saperly.com/api/v1"

// NewSaperlyAPI returns a client for the API at base (DefaultSaperlyAPI when empty) with the
// account's API key.
func NewSaperlyAPI(base, key string) *SaperlyAPI {
	if base == "" {
		base = DefaultSaperlyAPI
	}
	return &SaperlyAPI{base: strings.TrimRight(base, "/"), key: key, client: &http.Client{Timeout: 5 * time.Second}}
}

// HangUp implements CallControl: POST /calls/{call_id}/hangup.
func (s *SaperlyAPI) HangUp(ctx context.Context, callID string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/calls/"+url.PathEscape(callID)+"/hangup", nil)
	if err != nil {
		return fmt.Errorf("hang up call %s: %w", callID, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("hang up call %s: %w", callID, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10)) // reuse the connection
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("hang up call %s: HTTP %d", callID, res.StatusCode)
	}
	return nil
}

// speechRate is about how fast Saperly's text-to-speech speaks, in characters a second
// (150 words a minute), used to tell when a goodbye has been heard; hangUpMargin covers its
// start-up.
const (
	speechRate   = 15.0
	hangUpMargin = 500 * time.Millisecond
)

// speechTime is about how long line takes to say.
func speechTime(line string) time.Duration {
	return time.Duration(float64(utf8.RuneCountInString(line)) / speechRate * float64(time.Second))
}

// onToolCalls handles a model round that ended in tool calls: what the model said first is
// spoken, end_call ends the turn on a goodbye, and HTTP tools run in the background while
// the caller hears a holding phrase, after which the model is asked again with the results.
func (t *turn) onToolCalls(calls []ToolCall) {
	for _, l := range t.ch.End(true) {
		if !t.sayModel(l, time.Time{}) {
			return
		}
	}
	for i := range calls {
		if calls[i].ID == "" {
			calls[i].ID = fmt.Sprintf("call_%d", t.toolCalls+i) // some servers leave it out
		}
	}
	// end_call ends the turn only when it comes alone: next to another tool ("I've cancelled
	// your order, goodbye") that tool must run first, and the model hears back before it ends.
	if len(calls) == 1 && calls[0].Name == EndCallTool && t.a.control != nil && t.ag.Settings.EndCall {
		t.endCall = true
		if len(t.roundText) == 0 {
			// The model ended the call without a word of goodbye: never hang up on silence.
			if !t.say(t.cfg.GoodbyeLine) {
				return
			}
		}
		t.stats.EndCall = true
		t.stats.Outcome = OutcomeAnswered
		t.done = true
		return
	}
	if t.toolRounds >= maxToolRounds {
		t.log.Warn("tool rounds exhausted", zap.Int("rounds", t.toolRounds))
		t.stats.Budget = "tool_rounds"
		t.finish(nil, "", OutcomeAnswered)
		return
	}
	t.req.Messages = append(t.req.Messages, Message{Role: "assistant", Text: strings.Join(t.roundText, " "), ToolCalls: calls})
	if len(t.roundText) == 0 {
		t.hold() // the model said nothing before calling: the caller hears that we are on it
	}
	t.toolRounds++
	first := t.toolCalls
	t.toolCalls += len(calls)
	done := make(chan []session.Entry, 1)
	t.toolDone = done
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		done <- t.runTools(calls, first)
	}()
}

// runTools calls each tool in turn. It is detached from the caller's connection: a caller
// who talks over the holding phrase must not cut a booking in half, and the result goes into
// the history so the next turn knows it happened. Each call is bounded by its tool's timeout.
func (t *turn) runTools(calls []ToolCall, first int) []session.Entry {
	ctx := context.WithoutCancel(t.ctx)
	at := eventTime(t.ev).UnixMilli()
	turnKey := t.ev.ID
	if turnKey == "" {
		turnKey = t.ev.Delivery.ID
	}
	out := make([]session.Entry, len(calls))
	for i, c := range calls {
		result := toolError("there is no tool called " + c.Name)
		if c.Name == EndCallTool {
			result = toolError("end_call must be called alone: say goodbye and call it again once the other tools have answered")
		}
		if tool, ok := findTool(t.ag, c.Name); ok && i > 0 && t.ctx.Err() != nil {
			// The turn ended (the caller left, or a budget) while an earlier call ran: start
			// nothing new, so the answer's end never waits on more than one call. The first
			// call the model asked for runs even so: the caller heard us start on it.
			result = toolError("not run: the turn ended first")
		} else if ok {
			key := fmt.Sprintf("%s:%s:%d", t.ev.CallID, turnKey, first+i)
			result = t.a.callTool(ctx, tool, c, key)
		}
		out[i] = session.Entry{
			Kind: session.EntryTool, EventID: t.ev.ID, At: at,
			ToolCall: c.ID, ToolName: c.Name, ToolArgs: c.Args, Text: result,
		}
	}
	return out
}

// onToolsDone feeds the tools' results to the model that called them and starts its next
// round.
func (t *turn) onToolsDone(entries []session.Entry) {
	t.toolDone = nil
	t.tools = append(t.tools, entries...)
	if t.rec != nil {
		t.rec.add(logItem{tools: entries}) // a delivery taking the turn over must not run them again
	}
	for _, e := range entries {
		t.req.Messages = append(t.req.Messages, Message{Role: "tool", ToolCallID: e.ToolCall, Text: e.Text})
	}
	t.stats.ToolCalls += len(entries)
	if t.toolRounds >= maxToolRounds {
		t.req.Tools = nil // answer with what you have
	}
	caller := t.sources[t.chosen]
	t.chosen = -1
	t.ch = NewChunker(t.cfg.Chunker)
	t.roundText = nil
	t.holdsSinceLine = 0 // the wait for the tool is over; the stall budget starts again
	t.startSource(caller.llm, caller.model)
}

// hangUp ends the call once its goodbye has been heard. It keeps the answer open for about
// as long as the rest of the answer takes to say, so a caller who talks over the goodbye
// closes the connection (barge-in) and the call stays up, with the intention kept on the
// history for the next turn; then it asks the carrier to hang up.
func (t *turn) hangUp(ctx context.Context) {
	wait := time.Until(t.playEnd) + hangUpMargin
	if wait > t.cfg.EndCallHold {
		// A goodbye longer than the hold: cutting it off would be worse than leaving the line
		// to the caller, who hangs up after it.
		t.log.Warn("goodbye too long to wait for, not hanging up", Millis("speech_left_ms", wait))
		t.stats.HangUp = "too_long"
		return
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		t.gone = true
		t.stats.Outcome = OutcomeCut
		t.stats.HangUp = "skipped"
		return
	case <-timer.C:
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.a.control.HangUp(hctx, t.ev.CallID); err != nil {
		t.log.Error("hang-up failed", zap.Error(err))
		t.stats.HangUp = "failed"
		return
	}
	t.stats.HangUp = "sent"
}
