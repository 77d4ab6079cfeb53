package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what a run measured. It is written as JSON as it is (--json); every duration
// is in the unit its key names.
type Report struct {
	Model        string     `json:"model"` // "closed" or "open"
	Concurrency  int        `json:"concurrency,omitempty"`
	Rate         float64    `json:"rate_per_s,omitempty"`
	PlannedCalls int        `json:"planned_calls,omitempty"`
	DurationS    float64    `json:"duration_s,omitempty"`
	RampS        float64    `json:"ramp_s"`
	MaxDurationS float64    `json:"max_duration_s"`
	Scripts      []string   `json:"scripts,omitempty"`
	Target       string     `json:"target,omitempty"`
	Note         string     `json:"note,omitempty"`
	Start        time.Time  `json:"start"`
	WallS        float64    `json:"wall_s"`
	Stop         StopReason `json:"stop"`
	Interrupted  bool       `json:"interrupted"`

	Calls      CallCounts     `json:"calls"`
	PeakActive int            `json:"peak_active"`
	CallsPerS  float64        `json:"calls_per_s"`
	TurnsPerS  float64        `json:"turns_per_s"`
	Deliveries map[string]int `json:"deliveries"` // answered or failed, by event kind
	Turns      int            `json:"turns"`      // messages answered or failed
	Lines      int            `json:"lines"`
	Chars      int            `json:"chars"`

	// FirstLine is from the POST of a message to its first spoken line; Gap between two
	// lines of an answer; Turn from the POST to the end of the answer.
	FirstLine Latency `json:"first_line"`
	Gap       Latency `json:"gap"`
	Turn      Latency `json:"turn"`

	Holds     int     `json:"holding_phrases"`
	Apologies int     `json:"apologies"`
	Silent    int     `json:"silent_turns"` // answered 200 with nothing to say
	BargeIns  int     `json:"barge_ins"`    // answers the caller talked over (on purpose)
	Budget    Budgets `json:"budget"`

	ErrorCount   int               `json:"error_count"`
	Errors       map[ErrorKind]int `json:"errors"`
	ErrorSamples []string          `json:"error_samples,omitempty"`

	Series []Second `json:"series"`
}

// CallCounts counts the calls of a run.
type CallCounts struct {
	Started   int `json:"started"`
	Completed int `json:"completed"` // every delivery answered as it should be
	Failed    int `json:"failed"`    // at least one delivery failed, or the call could not go on
	Aborted   int `json:"aborted"`   // cut by Ctrl-C or the hard bound
	Skipped   int `json:"skipped"`   // open model: due while MaxActive calls were in progress
}

// Budgets are the turn budgets and how many turns missed each.
type Budgets struct {
	GapS       float64 `json:"gap_s"`
	TurnS      float64 `json:"turn_s"`
	Chars      int     `json:"chars"`
	GapMisses  int     `json:"gap_misses"`  // turns with a gap between lines over GapS
	TurnMisses int     `json:"turn_misses"` // turns longer than TurnS
	CharMisses int     `json:"char_misses"` // turns that spoke more than Chars characters
}

// Latency is one HDR histogram's figures.
type Latency struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// HDR is the whole histogram (microseconds) in the HdrHistogram V2 compressed base64
	// encoding, for tools that merge or plot runs.
	HDR     string   `json:"hdr,omitempty"`
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket is one bar of a distribution: Count values in [FromMs, UpToMs).
type Bucket struct {
	FromMs float64 `json:"from_ms"`
	UpToMs float64 `json:"up_to_ms"`
	Count  int64   `json:"count"`
}

// Second is one second of the run: T seconds after the start.
type Second struct {
	T          int               `json:"t_s"`
	Started    int               `json:"calls_started"`
	Ended      int               `json:"calls_ended"`
	Active     int               `json:"active"` // calls in progress at the end of the second
	PeakActive int               `json:"peak_active"`
	Turns      int               `json:"turns"` // messages sent in this second
	ErrorCount int               `json:"error_count"`
	Errors     map[ErrorKind]int `json:"errors,omitempty"`
	// The first-line percentiles of the turns sent in this second (0: none answered).
	FirstLineP50Ms float64 `json:"first_line_p50_ms"`
	FirstLineP90Ms float64 `json:"first_line_p90_ms"`
	FirstLineP99Ms float64 `json:"first_line_p99_ms"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// Headline is the run in one line: how it was driven and how it ended.
func (r *Report) Headline() string {
	var how string
	if r.Model == "open" {
		how = fmt.Sprintf("open model, %g calls/s", r.Rate)
	} else {
		how = fmt.Sprintf("closed model, %d at once", r.Concurrency)
	}
	var bound []string
	if r.PlannedCalls > 0 {
		bound = append(bound, fmt.Sprintf("%d calls", r.PlannedCalls))
	}
	if r.DurationS > 0 {
		bound = append(bound, fmtSeconds(r.DurationS))
	}
	if r.RampS > 0 {
		bound = append(bound, "ramp "+fmtSeconds(r.RampS))
	}
	return fmt.Sprintf("%s, %s; stopped: %s after %s", how, strings.Join(bound, ", "), stopText(r.Stop), fmtSeconds(r.WallS))
}

func stopText(s StopReason) string {
	switch s {
	case StopCalls:
		return "all calls done"
	case StopDuration:
		return "duration reached"
	case StopMaxDuration:
		return "HARD BOUND (max duration) reached, calls in progress cancelled"
	case StopInterrupted:
		return "INTERRUPTED, figures so far"
	}
	return string(s)
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}

// WriteSummary writes the report for a person at a terminal.
func (r *Report) WriteSummary(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	if r.Target != "" {
		p("load run against %s", r.Target)
	}
	p("%s", r.Headline())
	if r.Note != "" {
		p("note: %s", r.Note)
	}
	p("calls       %d started, %d completed, %d failed, %d aborted, %d skipped; peak %d at once",
		r.Calls.Started, r.Calls.Completed, r.Calls.Failed, r.Calls.Aborted, r.Calls.Skipped, r.PeakActive)
	p("throughput  %.1f turns/s, %.1f calls/s; %d turns, %d lines", r.TurnsPerS, r.CallsPerS, r.Turns, r.Lines)
	p("latency     %-6s %9s %9s %9s %9s %9s %9s", "", "p50", "p90", "p99", "p99.9", "max", "count")
	for _, l := range []struct {
		name string
		v    Latency
	}{{"first line", r.FirstLine}, {"gap", r.Gap}, {"turn", r.Turn}} {
		p("  %-16s %9s %9s %9s %9s %9s %9d", l.name, fmtMs(l.v.P50Ms), fmtMs(l.v.P90Ms), fmtMs(l.v.P99Ms), fmtMs(l.v.P999Ms), fmtMs(l.v.MaxMs), l.v.Count)
	}
	p("heard       %d holding phrases, %d apologies, %d silent turns, %d barge-ins", r.Holds, r.Apologies, r.Silent, r.BargeIns)
	p("budgets     %d gaps over %s, %d turns over %s, %d answers over %d chars",
		r.Budget.GapMisses, fmtSeconds(r.Budget.GapS), r.Budget.TurnMisses, fmtSeconds(r.Budget.TurnS), r.Budget.CharMisses, r.Budget.Chars)
	if r.ErrorCount == 0 {
		p("errors      none")
	} else {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		p("errors      %d: %s", r.ErrorCount, strings.Join(kinds, ", "))
		for _, s := range r.ErrorSamples {
			p("  e.g. %s", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtMs prints milliseconds readably: 312ms, 1.24s.
func fmtMs(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
}
