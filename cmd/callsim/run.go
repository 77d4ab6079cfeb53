package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/callbrain/callbrain/test/saperly"
)

const (
	defaultURL  = "http://127.0.0.1:8080"
	defaultLine = "00000000-0000-4000-8000-00000ca11000"
	defaultFrom = "+15555550100" // 555-01xx numbers are reserved for fiction
	defaultTo   = "+15555550199"
)

const usage = `Usage:
  callsim say [flags] "what the caller says" ["what they say next" ...]
  callsim say --voice DIR "what the caller says"   (hear it: one WAV per line, espeak-ng)
  callsim event --kind KIND [flags]
  callsim api [--addr 127.0.0.1:8091] [--key KEY]
  callsim record pull [--redis URL] [--since ID|TIME|AGE] [--out DIR]
  callsim play [--url U] [--secret S | --lines lines.yaml] [--junit FILE] [--time-scale X] SCRIPT|DIR ...
  callsim load [flags] SCRIPT[:WEIGHT]|DIR ...   (callsim load --help; docs/load.md)

callsim plays Saperly against a running brain. Every delivery is signed as Saperly signs it
(PROTOCOL §1.2); every spoken line is printed with its arrival time since the event was sent:

  $ callsim say "I'd like to book a cleaning"
  call 3f2c…
  +  412ms  Sure, I can help you book that.
  +  980ms  We have openings on Tuesday at 3:30 p.m. and Wednesday at 10 a.m.
  2 lines, first line 412ms, total 1530ms

say sends one message event per argument, in order, as one call. Without --call it first
starts a new call (call_started) and prints its id, so a later say --call ID continues it.

api serves a stand-in for Saperly's REST API (hang-ups, SMS sends) and prints each request, so
an agent's end_call can be tried locally: point the brain's SAPERLY_API_BASE at the URL it prints.

record pull fetches the call scripts a deployment recorded (BRAIN_RECORD) from its Redis.
play plays call scripts (docs/scripts.md) against the brain: it prints each call as the caller
hears it, with timings and how each answer differs from the recorded one, checks every
expectation, and exits 1 when one fails (2 when a script or the command line is wrong).
--junit FILE writes a JUnit XML report; --api ADDR serves the REST API stand-in to see
hang-ups (ends_call); --model URL sees tool calls through mockllm's record of its requests.

event sends any other event: call_started, interrupted, call_ended, sms_received, test,
call_incoming and call_outgoing (these two go to the status callback URL), or any other kind.

Environment:
  BRAIN_URL               the brain's base URL (default ` + defaultURL + `)
  SAPERLY_WEBHOOK_SECRET  the line's signing secret (default: the development secret, which a
                          brain without a secret accepts on loopback)

A status other than 200 prints the status and the brain's error body, and exits 1.
`

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run is the whole command: args are the arguments after the program name.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("missing command: say, event, play, load, record or api")
	}
	switch args[0] {
	case "say":
		return say(ctx, args[1:], getenv, stdout, stderr)
	case "event":
		return event(ctx, args[1:], getenv, stdout, stderr)
	case "api":
		return api(ctx, args[1:], stdout, stderr)
	case "record":
		return record(ctx, args[1:], getenv, stdout, stderr)
	case "play":
		return play(ctx, args[1:], getenv, stdout, stderr)
	case "load":
		return load(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q: want say, event, play, load, record or api", args[0])
	}
}

// common holds the flags of both commands.
type common struct {
	url, call, line, from, to string
}

func (c *common) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.url, "url", or(getenv("BRAIN_URL"), defaultURL), "the brain's base `URL` (env BRAIN_URL)")
	fs.StringVar(&c.call, "call", "", "the call `id`")
	fs.StringVar(&c.line, "line", defaultLine, "the line `id`")
	fs.StringVar(&c.from, "from", defaultFrom, "the caller's `number`")
	fs.StringVar(&c.to, "to", defaultTo, "the line's `number`")
}

func (c *common) client(getenv func(string) string) *saperly.Client {
	return &saperly.Client{URL: c.url, Secret: or(getenv("SAPERLY_WEBHOOK_SECRET"), saperly.DevSecret)}
}

// parse parses flags and positional arguments in any order ("say hello --end" works too).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		// After "--" everything is an argument, even when it starts with a dash.
		if consumed := len(args) - fs.NArg(); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, fs.Args()...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprintf(stderr, "\n%s flags:\n", name)
		fs.PrintDefaults()
	}
	return fs
}

func say(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("say", stderr)
	var c common
	c.register(fs, getenv)
	end := fs.Bool("end", false, "send call_ended after the last answer")
	bargeIn := fs.Int("barge-in", -1, "talk over each answer after `N` lines: hang up, then send interrupted with what was heard")
	voiceDir := fs.String("voice", "", "speak each line with espeak-ng into a WAV file of its own in `DIR` (DIR/01-01.wav, …, DIR/phrases.txt)")
	voiceName := fs.String("espeak-voice", "en-us", "the espeak-ng `voice` for --voice (espeak-ng --voices lists them)")
	texts, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(texts) == 0 {
		fs.Usage()
		return usagef("say: nothing to say")
	}
	var vo *voice
	if *voiceDir != "" {
		if vo, err = newVoice(*voiceDir, *voiceName); err != nil {
			return err
		}
	}
	client := c.client(getenv)

	if c.call == "" {
		c.call = saperly.NewUUID()
		fmt.Fprintf(stdout, "call %s\n", c.call)
		res, err := client.StartCall(ctx, c.call, c.line, c.from, c.to)
		if err := check("call_started", res, err); err != nil {
			return err
		}
	}
	for _, text := range texts {
		if len(texts) > 1 {
			fmt.Fprintf(stdout, "> %s\n", text)
		}
		var opts []saperly.Option
		if *bargeIn >= 0 {
			opts = append(opts, saperly.WithCloseAfter(*bargeIn))
		}
		res, err := client.Say(ctx, c.call, c.line, text, opts...)
		if res != nil && res.Status == http.StatusOK {
			printAnswer(stdout, res)
		}
		if err := check("message", res, err); err != nil {
			return err
		}
		if vo != nil {
			paths, err := vo.speak(ctx, answerLines(res))
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "voice: %s in %s\n", plural(len(paths), "WAV file"), *voiceDir)
		}
		if res.Cut {
			heard := res.Text()
			fmt.Fprintf(stdout, "(caller talks over the answer after %s)\n", plural(len(res.Lines), "line"))
			ir, err := client.Interrupt(ctx, c.call, c.line, heard)
			if err := check("interrupted", ir, err); err != nil {
				return err
			}
		}
	}
	if *end {
		res, err := client.End(ctx, c.call, c.line)
		if err := check("call_ended", res, err); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "call %s ended\n", c.call)
	}
	return nil
}

func event(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("event", stderr)
	var c common
	c.register(fs, getenv)
	kind := fs.String("kind", "", "the event `kind` (call_started, interrupted, call_ended, sms_received, test, …)")
	partial := fs.String("partial", "", "interrupted: what the caller heard of the last answer")
	text := fs.String("text", "", "message: the caller's words; sms_received: the SMS body")
	data := fs.String("data", "", "a JSON `object` whose keys are added to the body, replacing any set above")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return usagef("event: unexpected argument %q", pos[0])
	}
	var extra map[string]any
	if *data != "" {
		if err := json.Unmarshal([]byte(*data), &extra); err != nil {
			return usagef("event: --data is not a JSON object: %w", err)
		}
	}
	client := c.client(getenv)

	path := saperly.WebhookPath
	switch *kind {
	case "":
		fs.Usage()
		return usagef("event: --kind is required")
	case "message", "interrupted", "call_ended":
		if c.call == "" {
			return usagef("event: --call is required for %s", *kind)
		}
	case "call_started":
		if c.call == "" {
			c.call = saperly.NewUUID()
			fmt.Fprintf(stdout, "call %s\n", c.call)
		}
	case "call_incoming", "call_outgoing":
		path = saperly.StatusPath
	}
	ev := client.NewEvent(*kind, c.call, c.line)
	switch *kind {
	case "call_started", "call_incoming", "call_outgoing":
		ev["from_number"], ev["to_number"] = c.from, c.to
		ev["direction"] = map[bool]string{true: "outbound", false: "inbound"}[*kind == "call_outgoing"]
	case "message":
		ev["text"] = *text
	case "interrupted":
		ev["partial_response_text"] = *partial
	case "call_ended":
		ev["status"] = "completed"
	case "sms_received":
		ev["from_number"], ev["to_number"], ev["message"] = c.from, c.to, *text
		ev["message_sid"] = "SM" + strings.ReplaceAll(saperly.NewUUID(), "-", "")
	}
	for k, v := range extra {
		ev[k] = v
	}

	res, err := client.Send(ctx, path, ev)
	if res != nil && res.Status == http.StatusOK {
		if len(res.Lines) > 0 || isNDJSON(res.ContentType) || spoken(res.Body) != "" {
			printAnswer(stdout, res)
		} else {
			fmt.Fprintf(stdout, "%s: %d %s (%dms)\n", *kind, res.Status, strings.TrimSpace(string(res.Body)), res.Elapsed.Milliseconds())
		}
	}
	return check(*kind, res, err)
}

// check turns a failed delivery into the command's error: the status and the brain's error
// body for a non-200 answer.
func check(kind string, res *saperly.Result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	if res.Status != http.StatusOK {
		body := strings.TrimSpace(string(res.Body))
		if body == "" {
			body = "(empty body)"
		}
		return fmt.Errorf("%s: status %d: %s", kind, res.Status, body)
	}
	return nil
}

// printAnswer prints what the caller hears, one line per spoken line with its arrival time,
// and a summary.
func printAnswer(w io.Writer, res *saperly.Result) {
	lines := answerLines(res)
	for _, l := range lines {
		fmt.Fprintf(w, "+%5dms  %s\n", l.At.Milliseconds(), l.Text)
	}
	fmt.Fprintln(w, summary(lines, res.Elapsed))
}

// answerLines are the lines the caller hears of an answer.
func answerLines(res *saperly.Result) []saperly.Line {
	if !isNDJSON(res.ContentType) {
		// A plain JSON answer is one line, spoken when the whole body has arrived.
		if text := spoken(res.Body); text != "" {
			return []saperly.Line{{Text: text, At: res.Elapsed}}
		}
	}
	return res.Lines
}

func summary(lines []saperly.Line, total time.Duration) string {
	if len(lines) == 0 {
		return fmt.Sprintf("0 lines, total %dms", total.Milliseconds())
	}
	return fmt.Sprintf("%s, first line %dms, total %dms", plural(len(lines), "line"), lines[0].At.Milliseconds(), total.Milliseconds())
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// spoken returns the text of a plain JSON answer ({"text":"…"}), or "".
func spoken(body []byte) string {
	var v struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Text
}

func isNDJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/x-ndjson"
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
