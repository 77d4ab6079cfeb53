package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/test/serve"
)

// errFailed is a played script whose expectations failed (exit status 1).
var errFailed = errors.New("expectations failed")

// play plays call scripts against a brain, prints the conversation as the caller hears it,
// and fails when an expectation does.
func play(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("play", stderr)
	url := fs.String("url", or(getenv("BRAIN_URL"), defaultURL), "the brain's base `URL` (env BRAIN_URL)")
	secret := fs.String("secret", "", "the signing `secret` (default: env SAPERLY_WEBHOOK_SECRET, else the development secret)")
	lines := fs.String("lines", "", "a lines.yaml `file`: sign each script with its line's secret (the variable secret_env names)")
	line := fs.String("line", defaultLine, "the line `id` for scripts that name none")
	junit := fs.String("junit", "", "write a JUnit XML report to this `file`")
	scale := fs.Float64("time-scale", 1, "multiply every scripted pause by `X` (0: no pauses)")
	apiAddr := fs.String("api", "", "serve a stand-in for Saperly's REST API on this `address` to see hang-ups (point the brain's SAPERLY_API_BASE at it)")
	apiKey := fs.String("api-key", "", "the API `key` the brain sends to --api (empty: any)")
	model := fs.String("model", "", "the stand-in model's base `URL` (mockllm): see tool calls through its /mock/requests")
	quiet := fs.Bool("q", false, "print only failed turns and the summary")
	holds := fs.String("holds", "", "more holding `phrases`, separated by |, besides the brain's defaults (an agent's holding_phrases)")
	apologies := fs.String("apologies", "", "more `openings` of an apology, separated by |, besides sorry, I'm sorry, apologies, …")
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		fs.Usage()
		return usagef("play: no script given")
	}
	if *scale < 0 {
		return usagef("play: --time-scale %v is negative", *scale)
	}
	if *secret != "" && *lines != "" {
		return usagef("play: give --secret or --lines, not both")
	}
	scripts, err := callscript.Load(paths...)
	if err != nil {
		return usageError{err}
	}

	r := &callscript.Runner{
		URL: *url, Secret: or(*secret, getenv("SAPERLY_WEBHOOK_SECRET")), LineID: *line,
		From: defaultFrom, To: defaultTo, TimeScale: *scale,
	}
	if *holds != "" {
		r.Holds = append(slices.Clone(agent.DefaultHoldingPhrases), strings.Split(*holds, "|")...)
	}
	if *apologies != "" {
		r.Apologies = append(slices.Clone(callscript.DefaultApologies), strings.Split(*apologies, "|")...)
	}
	if *lines != "" {
		secretFor, err := lineSecrets(*lines, getenv)
		if err != nil {
			return usageError{err}
		}
		r.SecretFor = secretFor
	}
	obs := &observer{model: strings.TrimSuffix(*model, "/")}
	if *apiAddr != "" {
		stand, stop, err := serveAPI(*apiAddr, *apiKey)
		if err != nil {
			return err
		}
		defer stop()
		obs.api = stand
	}
	if obs.api != nil || obs.model != "" {
		r.Observer = obs
	}

	var results []*callscript.Result
	failed := 0
	for _, s := range scripts {
		res := r.Play(ctx, s)
		results = append(results, res)
		printResult(stdout, res, *quiet)
		if res.Failed() {
			failed++
		}
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintf(stdout, "%s: %d passed, %d failed\n", plural(len(results), "script"), len(results)-failed, failed)
	if refused(results) {
		fmt.Fprintf(stdout, "nothing accepted a connection at %s: is the brain running there (--url, BRAIN_URL)?\n", *url)
	}
	if *junit != "" {
		if err := writeJUnit(*junit, results); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("play: stopped: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %s: %w", failed, plural(len(results), "script"), errFailed)
	}
	return nil
}

func refused(results []*callscript.Result) bool {
	for _, res := range results {
		for _, t := range res.Turns {
			for _, d := range t.Deliveries() {
				if d.Err != nil && d.Err.Kind == callscript.ErrRefused {
					return true
				}
			}
		}
	}
	return false
}

// lineSecrets reads lines.yaml for the name of each line's secret variable.
func lineSecrets(path string, getenv func(string) string) (func(string) string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lines: %w", err)
	}
	var lines map[string]struct {
		SecretEnv string `yaml:"secret_env"`
	}
	if err := yaml.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("read lines %s: %w", path, err)
	}
	return func(lineID string) string {
		if l, ok := lines[lineID]; ok && l.SecretEnv != "" {
			return getenv(l.SecretEnv)
		}
		return ""
	}, nil
}

// serveAPI serves a stand-in for Saperly's REST API on addr until stop is called.
func serveAPI(addr, key string) (*saperly.API, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	stand := saperly.NewAPI(key)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: stand}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve.Run(ctx, srv, ln, time.Second) // stopped below; a failure shows as unseen hang-ups
	}()
	return stand, func() { cancel(); <-done }, nil
}

// observer sees hang-ups through a stand-in for Saperly's API and tool calls through the
// stand-in model's record of its requests.
type observer struct {
	api   *saperly.API
	model string
}

// hangupGrace is how long a hang-up the script expects may come after the answer ended: the
// brain hangs up once the goodbye should have been heard.
const hangupGrace = 10 * time.Second

func (o *observer) Observe(ctx context.Context, q callscript.Query) (callscript.Observation, error) {
	var obs callscript.Observation
	if q.NeedHangup && o.api != nil {
		obs.HangSeen = true
		if q.WantHangup {
			wctx, cancel := context.WithTimeout(ctx, hangupGrace)
			_, err := o.api.WaitHangup(wctx, q.CallID)
			cancel()
			obs.HungUp = err == nil
		} else {
			obs.HungUp = o.api.Count(q.CallID) > 0
		}
	}
	if q.NeedTools && o.model != "" {
		tools, err := o.tools(ctx, q)
		if err != nil {
			return obs, err
		}
		obs.Tools, obs.ToolsSeen = tools, true
	}
	return obs, nil
}

// tools reads the model's requests since the message was sent and returns the tools the
// model called after the caller's words.
func (o *observer) tools(ctx context.Context, q callscript.Query) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.model+"/mock/requests", nil)
	if err != nil {
		return nil, fmt.Errorf("read model requests: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read model requests: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read model requests: status %d from %s", res.StatusCode, o.model)
	}
	var reqs []mockllm.Request
	if err := json.NewDecoder(res.Body).Decode(&reqs); err != nil {
		return nil, fmt.Errorf("read model requests: %w", err)
	}
	said := callscript.Normalize(q.Text)
	var tools []string
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.Time.Before(q.Sent) {
			continue
		}
		last := -1
		for i, m := range r.Messages {
			if m.Role == "user" {
				last = i
			}
		}
		if last < 0 || callscript.Normalize(r.Messages[last].Content) != said {
			continue
		}
		for _, m := range r.Messages[last+1:] {
			for _, c := range m.ToolCalls {
				if !seen[c.ID] {
					seen[c.ID] = true
					tools = append(tools, c.Name)
				}
			}
		}
	}
	return tools, nil
}

// printResult prints one call as the caller heard it.
func printResult(w io.Writer, res *callscript.Result, quiet bool) {
	s := res.Script
	where := s.File
	fmt.Fprintf(w, "== %s (%s) call %s\n", s.Name, where, res.CallID)
	for _, t := range res.Turns {
		if quiet && !t.Failed() {
			continue
		}
		printTurn(w, t)
	}
	checks, bad := 0, 0
	for _, t := range res.Turns {
		for _, c := range t.Checks {
			checks++
			if !c.OK {
				bad++
			}
		}
	}
	verdict := "PASS"
	if res.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s %s: %s, %d failed (%s)\n", verdict, s.Name, plural(checks, "check"), bad, res.Elapsed.Round(time.Millisecond))
	if res.Err != nil {
		fmt.Fprintf(w, "   stopped: %v\n", res.Err)
	}
	fmt.Fprintln(w)
}

func printTurn(w io.Writer, t *callscript.TurnResult) {
	think := ""
	if t.Turn.Think > 0 {
		think = fmt.Sprintf("   (after %s)", t.Turn.Think)
	}
	d := t.Delivery
	switch t.Turn.Kind {
	case callscript.KindSay:
		fmt.Fprintf(w, "> %s%s\n", t.Turn.Text, think)
		for _, l := range d.Lines {
			mark := ""
			switch {
			case l.Hold:
				mark = "   (holding phrase)"
			case l.Apology:
				mark = "   (apology)"
			}
			fmt.Fprintf(w, "  +%5dms  %s%s\n", l.At.Milliseconds(), l.Text, mark)
		}
		fmt.Fprintf(w, "  %s\n", answerSummary(d))
		if d.Cut {
			fmt.Fprintf(w, "  (caller talks over the answer after %s; heard %q)\n", plural(len(d.Lines), "line"), t.Heard)
		}
		if t.Interrupt != nil {
			fmt.Fprintf(w, "  interrupted -> %s\n", statusText(t.Interrupt))
		}
		if t.Retry != nil {
			fmt.Fprintf(w, "  retry (attempt 2) -> %s: %q\n", statusText(t.Retry), t.Retry.Text())
		}
		if t.Duplicate != nil {
			fmt.Fprintf(w, "  duplicate delivery -> %s\n", statusText(t.Duplicate))
		}
		if a := t.Turn.Answer; a != nil {
			printDiff(w, a, d)
		}
	case callscript.KindSMS:
		fmt.Fprintf(w, "  sms %q -> %s%s\n", t.Turn.Text, statusText(d), think)
	case callscript.KindStatus, callscript.KindSend:
		fmt.Fprintf(w, "  %s %s -> %s%s\n", t.Turn.Kind, t.Turn.Event, statusText(d), think)
	default:
		fmt.Fprintf(w, "  %s -> %s%s\n", t.Turn.Kind, statusText(d), think)
	}
	for _, c := range t.Checks {
		switch {
		case !c.OK:
			fmt.Fprintf(w, "  ✗ %s: %s\n", c.Name, c.Detail)
		case !strings.HasSuffix(c.Name, " answered"):
			fmt.Fprintf(w, "  ✓ %s\n", c.Name)
		}
	}
}

func answerSummary(d *callscript.Delivery) string {
	if at, ok := d.FirstLine(); ok {
		return fmt.Sprintf("%s, first line %dms, total %dms", plural(len(d.Lines), "line"), at.Milliseconds(), d.Total.Milliseconds())
	}
	return fmt.Sprintf("0 lines, total %dms", d.Total.Milliseconds())
}

func statusText(d *callscript.Delivery) string {
	if d.Err != nil && d.Status == 0 {
		return d.Err.Error()
	}
	return fmt.Sprintf("%d (%dms)", d.Status, d.Total.Milliseconds())
}

// printDiff shows how today's answer differs from the recorded one: the same words (perhaps
// split into other lines), the start of them when the caller talked over the answer, or a
// line-by-line diff.
func printDiff(w io.Writer, rec *callscript.Answer, d *callscript.Delivery) {
	var was, now []string
	for _, l := range rec.Lines {
		was = append(was, l.Text)
	}
	for _, l := range d.Lines {
		now = append(now, l.Text)
	}
	then := ""
	if len(rec.Lines) > 0 {
		then = fmt.Sprintf(" (recorded: first line %dms)", rec.Lines[0].At.Milliseconds())
	}
	recText, text := strings.Join(strings.Fields(rec.Text()), " "), strings.Join(strings.Fields(d.Text()), " ")
	switch {
	case recText == text && len(was) == len(now):
		fmt.Fprintf(w, "  = same words as recorded%s\n", then)
		return
	case recText == text:
		fmt.Fprintf(w, "  = same words as recorded, in %s instead of %d%s\n", plural(len(now), "line"), len(was), then)
		return
	case d.Cut && strings.HasPrefix(recText, text):
		fmt.Fprintf(w, "  = the start of the recorded answer, then cut%s\n", then)
		return
	}
	fmt.Fprintf(w, "  ~ differs from the recorded answer%s:\n", then)
	for _, op := range diffLines(was, now) {
		fmt.Fprintf(w, "    %c %s\n", op.kind, op.text)
	}
}

type diffOp struct {
	kind rune // ' ' both, '-' recorded only, '+' today only
	text string
}

// diffLines is a longest-common-subsequence diff of two short lists of lines.
func diffLines(a, b []string) []diffOp {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			ops = append(ops, diffOp{'-', a[i]})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		ops = append(ops, diffOp{'-', a[i]})
	}
	for ; j < m; j++ {
		ops = append(ops, diffOp{'+', b[j]})
	}
	return ops
}

// JUnit XML, as CI systems read it: one suite per script, one case per check.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Time      float64     `xml:"time,attr"`
	File      string      `xml:"file,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
	SystemOut string      `xml:"system-out,omitempty"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(path string, results []*callscript.Result) error {
	out := junitSuites{Name: "callsim play"}
	for _, res := range results {
		s := res.Script
		suite := junitSuite{Name: s.Name, File: s.File, Time: res.Elapsed.Seconds()}
		var transcript strings.Builder
		printResult(&transcript, res, false)
		suite.SystemOut = transcript.String()
		for _, t := range res.Turns {
			secs := 0.0
			if t.Delivery != nil {
				secs = t.Delivery.Total.Seconds()
			}
			for _, c := range t.Checks {
				tc := junitCase{
					Name:      fmt.Sprintf("turn %d %s: %s", t.Index+1, turnLabel(t.Turn), c.Name),
					Classname: s.Name, File: s.File, Line: t.Turn.Line, Time: secs,
				}
				if !c.OK {
					where := fmt.Sprintf("%s:%d", s.File, t.Turn.Line)
					tc.Failure = &junitFailure{Message: c.Name + ": " + c.Detail, Type: "expectation", Text: where + ": " + c.Detail}
					suite.Failures++
				}
				suite.Cases = append(suite.Cases, tc)
			}
		}
		if res.Err != nil {
			suite.Cases = append(suite.Cases, junitCase{Name: "call played to the end", Classname: s.Name, File: s.File,
				Failure: &junitFailure{Message: res.Err.Error(), Type: "stopped", Text: res.Err.Error()}})
			suite.Failures++
		}
		suite.Tests = len(suite.Cases)
		out.Tests += suite.Tests
		out.Failures += suite.Failures
		out.Time += suite.Time
		out.Suites = append(out.Suites, suite)
	}
	data, err := xml.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	data = append([]byte(xml.Header), append(data, '\n')...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

// turnLabel names a turn in a report: its kind and the start of its text.
func turnLabel(t callscript.Turn) string {
	switch t.Kind {
	case callscript.KindSay, callscript.KindSMS:
		text := t.Text
		if r := []rune(text); len(r) > 40 {
			text = string(r[:40]) + "…"
		}
		return fmt.Sprintf("%s %q", t.Kind, text)
	case callscript.KindStatus, callscript.KindSend:
		return string(t.Kind) + " " + t.Event
	}
	return string(t.Kind)
}
