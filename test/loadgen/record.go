package loadgen

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to an hour, to 3 significant figures.
const (
	hdrLowest  = 1
	hdrHighest = int64(time.Hour / time.Microsecond)
	hdrDigits  = 3
	// recentTurns is how many of the latest first lines the live median is taken over.
	recentTurns = 64
	// maxSamples is how many error messages a report keeps as examples.
	maxSamples = 5
)

func newHist() *hdr.Histogram { return hdr.New(hdrLowest, hdrHighest, hdrDigits) }

// record adds d to h, clamped to the histogram's range.
func record(h *hdr.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), hdrLowest), hdrHighest)
	_ = h.RecordValue(us) // in range by construction
}

// recorder accumulates the measurements of a run. Its methods are safe for concurrent use.
type recorder struct {
	cfg Config

	mu         sync.Mutex
	begin      time.Time
	firstLine  *hdr.Histogram
	gap        *hdr.Histogram
	turn       *hdr.Histogram
	seconds    []*second
	recent     []time.Duration // ring of the latest first lines
	recentNext int

	deliveries          map[string]int
	turns, lines, chars int
	holds, apologies    int
	silent, cut         int
	overGap, overTurn   int
	overChars           int
	errors              map[ErrorKind]int
	samples             []string
	sampled             map[string]bool
	completed, failed   int
	aborted, skips      int
	peakActive          int
}

// second is what happened in one second of the run.
type second struct {
	started, ended, turns int
	peakActive            int
	errors                map[ErrorKind]int
	// firstLine holds the first-line latencies of the turns sent in this second, in ms: a
	// few bytes per turn, where a histogram per second would cost tens of kB per second.
	firstLine []float32
}

func newRecorder(cfg Config) *recorder {
	return &recorder{
		cfg: cfg, firstLine: newHist(), gap: newHist(), turn: newHist(),
		deliveries: map[string]int{}, errors: map[ErrorKind]int{}, sampled: map[string]bool{},
	}
}

func (r *recorder) start(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.begin = t
}

// at returns the second of the run t falls in, growing the series as needed. r.mu is held.
func (r *recorder) at(t time.Time) *second {
	i := max(int(t.Sub(r.begin)/time.Second), 0)
	for len(r.seconds) <= i {
		r.seconds = append(r.seconds, &second{errors: map[ErrorKind]int{}})
	}
	return r.seconds[i]
}

func (r *recorder) callStarted(t time.Time, active int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.at(t)
	s.started++
	s.peakActive = max(s.peakActive, active)
	r.peakActive = max(r.peakActive, active)
}

func (r *recorder) callEnded(t time.Time, n int, kind ErrorKind, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at(t).ended++
	switch kind {
	case "":
		r.completed++
	case KindAborted:
		r.aborted++
	case KindFailed:
		r.failed++
	default:
		r.failed++
		r.errors[kind]++
		r.at(t).errors[kind]++
		r.sample("call", n, err)
	}
}

func (r *recorder) sample(what string, n int, err error) {
	if len(r.samples) >= maxSamples || err == nil {
		return
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	if !r.sampled[msg] { // one example of each distinct error
		r.sampled[msg] = true
		r.samples = append(r.samples, fmt.Sprintf("%s (call %d): %v", what, n, err))
	}
}

func (r *recorder) skip() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skips++
}

func (r *recorder) skipped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skips
}

func (r *recorder) delivery(n int, d Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d.Kind == KindAborted {
		return
	}
	r.deliveries[d.Event]++
	end := d.Sent.Add(d.Elapsed)
	if d.Err != nil {
		r.errors[d.Kind]++
		r.at(end).errors[d.Kind]++
		r.sample(d.Event, n, d.Err)
		if d.Event != EventMessage {
			return
		}
	}
	if d.Event != EventMessage {
		return
	}
	r.turns++
	s := r.at(d.Sent)
	s.turns++
	r.holds += d.Holds
	r.apologies += d.Apologies
	r.lines += len(d.Lines)
	r.chars += d.Chars
	if d.Cut {
		r.cut++
	}
	if d.Chars > r.cfg.MaxChars {
		r.overChars++
	}
	if d.Err != nil {
		return // a failed turn's timing is not what a caller of a working brain feels
	}
	record(r.turn, d.Elapsed)
	if d.Elapsed > r.cfg.TurnBudget {
		r.overTurn++
	}
	if len(d.Lines) == 0 {
		if !d.Cut {
			r.silent++
		}
		return
	}
	record(r.firstLine, d.Lines[0])
	s.firstLine = append(s.firstLine, float32(d.Lines[0].Seconds()*1000))
	if len(r.recent) < recentTurns {
		r.recent = append(r.recent, d.Lines[0])
	} else {
		r.recent[r.recentNext] = d.Lines[0]
		r.recentNext = (r.recentNext + 1) % recentTurns
	}
	overGap := false
	for i := 1; i < len(d.Lines); i++ {
		g := d.Lines[i] - d.Lines[i-1]
		record(r.gap, g)
		overGap = overGap || g > r.cfg.GapBudget
	}
	if overGap {
		r.overGap++
	}
}

// recentFirstLine is the median first-line latency of the latest turns.
func (r *recorder) recentFirstLine() time.Duration {
	r.mu.Lock()
	v := slices.Clone(r.recent)
	r.mu.Unlock()
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// report summarises the run.
func (r *recorder) report(begin, end time.Time, stop StopReason, started int) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	wall := end.Sub(begin)
	rep := &Report{
		Model: "closed", Concurrency: r.cfg.Concurrency, Rate: r.cfg.Rate, PlannedCalls: r.cfg.Calls,
		DurationS: r.cfg.Duration.Seconds(), RampS: r.cfg.Ramp.Seconds(), MaxDurationS: r.cfg.MaxDuration.Seconds(),
		Start: begin.UTC(), WallS: wall.Seconds(), Stop: stop, Interrupted: stop == StopInterrupted,
		Calls:      CallCounts{Started: started, Completed: r.completed, Failed: r.failed, Aborted: r.aborted, Skipped: r.skips},
		PeakActive: r.peakActive, Deliveries: nonzero(r.deliveries), Turns: r.turns, Lines: r.lines, Chars: r.chars,
		FirstLine: summarize(r.firstLine), Gap: summarize(r.gap), Turn: summarize(r.turn),
		Holds: r.holds, Apologies: r.apologies, Silent: r.silent, BargeIns: r.cut,
		Budget: Budgets{
			GapS: r.cfg.GapBudget.Seconds(), TurnS: r.cfg.TurnBudget.Seconds(), Chars: r.cfg.MaxChars,
			GapMisses: r.overGap, TurnMisses: r.overTurn, CharMisses: r.overChars,
		},
		Errors: nonzero(r.errors), ErrorSamples: slices.Clone(r.samples),
	}
	if r.cfg.Rate > 0 {
		rep.Model = "open"
	}
	for _, n := range r.errors {
		rep.ErrorCount += n
	}
	if wall > 0 {
		rep.TurnsPerS = float64(r.turns) / wall.Seconds()
		rep.CallsPerS = float64(r.completed+r.failed) / wall.Seconds()
	}
	active := 0
	for i, s := range r.seconds {
		active += s.started - s.ended
		sec := Second{T: i, Started: s.started, Ended: s.ended, Active: active, PeakActive: max(s.peakActive, active), Turns: s.turns, Errors: nonzero(s.errors)}
		for _, n := range s.errors {
			sec.ErrorCount += n
		}
		if len(s.firstLine) > 0 {
			slices.Sort(s.firstLine)
			sec.FirstLineP50Ms, sec.FirstLineP90Ms, sec.FirstLineP99Ms = rank(s.firstLine, 50), rank(s.firstLine, 90), rank(s.firstLine, 99)
		}
		rep.Series = append(rep.Series, sec)
	}
	return rep
}

// summarize is a histogram's figures in milliseconds, its log-spaced distribution and its
// HdrHistogram V2 encoding (base64, readable by every HdrHistogram library).
func summarize(h *hdr.Histogram) Latency {
	l := Latency{Count: h.TotalCount()}
	if l.Count == 0 {
		return l
	}
	p := h.ValueAtPercentiles([]float64{50, 90, 95, 99, 99.9})
	l.MinMs, l.MeanMs, l.MaxMs = msOf(h.Min()), h.Mean()/1000, msOf(h.Max())
	l.P50Ms, l.P90Ms, l.P95Ms, l.P99Ms, l.P999Ms = msOf(p[50]), msOf(p[90]), msOf(p[95]), msOf(p[99]), msOf(p[99.9])
	if enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase); err == nil {
		l.HDR = string(enc)
	} else {
		l.HDR = base64.StdEncoding.EncodeToString(nil)
	}
	l.Buckets = buckets(h)
	return l
}

// buckets spreads a histogram's counts over about 24 log-spaced buckets from its minimum to
// its maximum, for the distribution chart.
func buckets(h *hdr.Histogram) []Bucket {
	lo, hi := float64(max(h.Min(), 1)), float64(max(h.Max(), 1))
	const n = 24
	if hi <= lo {
		return []Bucket{{UpToMs: msOf(int64(hi)), Count: h.TotalCount()}}
	}
	step := math.Pow(hi/lo, 1.0/n)
	out := make([]Bucket, n)
	for i := range out {
		out[i].FromMs = lo * math.Pow(step, float64(i)) / 1000
		out[i].UpToMs = lo * math.Pow(step, float64(i+1)) / 1000
	}
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		v := float64(max(bar.From, 1))
		i := min(max(int(math.Log(v/lo)/math.Log(step)), 0), n-1)
		out[i].Count += bar.Count
	}
	return out
}

// rank is the p-th percentile of sorted values (nearest rank).
func rank(sorted []float32, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return float64(sorted[min(max(i, 0), len(sorted)-1)])
}

func msOf(us int64) float64 { return float64(us) / 1000 }

func nonzero[K comparable](m map[K]int) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}
