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

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/callbrain/callbrain/prompts"
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
func (a *Agent) callTool(ctx context.Context, tool prompts.Tool, call ToolCall, key string) (result string) {
	timeout := tool.Timeout
	if timeout <= 0 {
		timeout = prompts.DefaultToolTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx, span := a.tracer.Start(ctx, "tool "+tool.Name, trace.WithSpanKind(trace.SpanKindClient))
	span.SetAttributes(attribute.String("callbrain.tool", tool.Name))
	defer func() {
		if toolFailed(result) {
			span.SetStatus(codes.Error, "the model was told of an error")
		}
		span.End()
	}()

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
	injectTrace(req)
	for header, env := range tool.Headers {
		if a.cfg.Getenv != nil {
			if v := a.cfg.Getenv(env); v != "" {
				req.Header.Set(header, v)
			}
		}
	}
	res, err := a.http.Do(req)
	if err == nil {
		span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
	}
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

// toolFailed reports whether a tool result told the model of an error: one of ours
// (toolError, an HTTP status) or the tool's own {"error": …}.
func toolFailed(result string) bool {
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal([]byte(result), &r) == nil && len(r.Error) > 0 && string(r.Error) != "null"
}

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
