package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/loadgen"
	"github.com/callbrain/callbrain/test/saperly"
)

const loadUsage = `Usage:
  callsim load [flags] SCRIPT[:WEIGHT]|DIR ...

load drives many calls from recorded call scripts (docs/scripts.md) against a brain and
measures what the callers feel (docs/load.md):

  callsim load --url http://127.0.0.1:8080 --concurrency 20 --calls 200 test/e2e/testdata/load
  callsim load --rate 5 --duration 2m --ramp 30s --json run.json --report run.html scripts/

Closed model (--concurrency N, the default with 10): N calls at once, each followed by the
next as soon as it ends. Open model (--rate R): R calls started per second, whatever the brain's
pace (at most --max-active at once). The run stops after --calls calls or --duration (by
default 100 calls), and --max-duration cancels whatever is still running: a run always stops
by itself. Ctrl-C stops it at once and prints what was measured so far.

Scripts are played round-robin; SCRIPT:WEIGHT plays one WEIGHT times as often. A directory
stands for every *.yaml, *.yml and *.json file in it. Each call gets a fresh call id.

It exits 1 when a delivery failed or the run was interrupted, 2 on a usage mistake.
`

// loadFlags is the command line of load.
type loadFlags struct {
	url, secret, line       string
	concurrency, calls      int
	rate                    float64
	duration, ramp, maxDur  time.Duration
	maxActive               int
	timeScale               float64
	holds                   []string
	jsonPath, reportPath    string
	quiet                   bool
	note                    string
	scripts                 []string
	weights                 []int
	progressOut, summaryOut io.Writer
}

func load(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, loadUsage)
		fmt.Fprintf(stderr, "\nload flags:\n")
		fs.PrintDefaults()
	}
	var f loadFlags
	fs.StringVar(&f.url, "url", or(getenv("BRAIN_URL"), defaultURL), "the brain's base `URL` (env BRAIN_URL)")
	fs.StringVar(&f.secret, "secret", "", "the signing `secret` (default: env SAPERLY_WEBHOOK_SECRET, else the development secret)")
	fs.StringVar(&f.line, "line", "", "call this line `id`, whatever the scripts say")
	fs.IntVar(&f.concurrency, "concurrency", 0, "closed model: `N` calls at once (default 10 when --rate is not given)")
	rate := fs.String("rate", "", "open model: `R` calls started per second (\"5\" or \"5/s\")")
	fs.IntVar(&f.calls, "calls", 0, "stop after `N` calls (default 100 when --duration is not given)")
	fs.DurationVar(&f.duration, "duration", 0, "stop starting calls after `D`; calls in progress finish")
	fs.DurationVar(&f.ramp, "ramp", 0, "ramp up over `D`: callers start spread over it, or the rate rises to R over it")
	fs.DurationVar(&f.maxDur, "max-duration", loadgen.DefaultMaxDuration, "hard bound: cancel every call still in progress `D` after the start")
	fs.IntVar(&f.maxActive, "max-active", loadgen.DefaultMaxActive, "open model: at most `N` calls at once; calls due past it are skipped and counted")
	fs.Float64Var(&f.timeScale, "time-scale", 1, "multiply the scripts' pauses (think, late interrupted, retry delays) by `X`: 0.5 plays twice as fast, 0 without pauses")
	holds := fs.String("holds", getenv("BRAIN_HOLDING_PHRASES"), "the brain's holding `phrases`, |-separated (env BRAIN_HOLDING_PHRASES; default the brain's defaults)")
	fs.StringVar(&f.jsonPath, "json", "", "write the measurements as JSON to `FILE`")
	fs.StringVar(&f.reportPath, "report", "", "write a self-contained HTML report with charts to `FILE`")
	fs.BoolVar(&f.quiet, "quiet", false, "no live progress display (it is off anyway when stdout is not a terminal)")
	fs.StringVar(&f.note, "note", "", "a `note` printed in the reports (the machine, the build, …)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return usagef("load: no scripts: give script files or directories")
	}
	f.secret = or(or(f.secret, getenv("SAPERLY_WEBHOOK_SECRET")), saperly.DevSecret) // never shown by --help
	if *rate != "" {
		if f.rate, err = parseRate(*rate); err != nil {
			return usagef("load: --rate: %w", err)
		}
	}
	if f.rate == 0 && f.concurrency == 0 {
		f.concurrency = 10
	}
	if f.calls == 0 && f.duration == 0 {
		f.calls = 100
	}
	if f.timeScale < 0 {
		return usagef("load: --time-scale must be 0 or more")
	}
	if *holds != "" {
		f.holds = strings.Split(*holds, "|")
	}
	for _, p := range pos {
		path, w, err := splitWeight(p)
		if err != nil {
			return usagef("load: %w", err)
		}
		f.scripts, f.weights = append(f.scripts, path), append(f.weights, w)
	}
	f.progressOut, f.summaryOut = stdout, stdout
	return runLoad(ctx, f)
}

// runLoad runs a parsed load command.
func runLoad(ctx context.Context, f loadFlags) error {
	// Read every script first: a broken one stops the run before any call is made.
	var scripts []*callscript.Script
	var weights []int
	for i, p := range f.scripts {
		got, err := callscript.Load(p)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		for _, s := range got {
			if f.line != "" {
				c := *s
				c.LineID = f.line
				s = &c
			}
			scripts, weights = append(scripts, s), append(weights, f.weights[i])
		}
	}
	cfg := loadgen.Config{
		Concurrency: f.concurrency, Rate: f.rate, Calls: f.calls, Duration: f.duration, Ramp: f.ramp,
		MaxDuration: f.maxDur, MaxActive: f.maxActive,
	}
	conns := f.concurrency
	if f.rate > 0 {
		conns = min(f.maxActive, max(int(f.rate*60), 64))
	}
	runner := &callscript.Runner{
		URL: f.url, Secret: f.secret, HTTP: loadHTTPClient(conns), TimeScale: f.timeScale, Holds: f.holds,
	}
	play, err := loadgen.ScriptPlayer(runner, scripts, weights)
	if err != nil {
		return usagef("load: %w", err)
	}
	e, err := loadgen.New(cfg, play)
	if err != nil {
		return usagef("load: %w", err)
	}

	stopProgress := func() {}
	if !f.quiet && isTerminal(f.progressOut) {
		stopProgress = showProgress(f.progressOut, e)
	}
	r := e.Run(ctx)
	stopProgress()

	r.Target = f.url
	r.Note = f.note
	for i, s := range scripts {
		name := s.Name
		if weights[i] > 1 {
			name += fmt.Sprintf(" ×%d", weights[i])
		}
		r.Scripts = append(r.Scripts, name)
	}
	if err := r.WriteSummary(f.summaryOut); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	var errs []error
	if f.jsonPath != "" {
		errs = append(errs, writeFile(f.jsonPath, r.WriteJSON))
	}
	if f.reportPath != "" {
		errs = append(errs, writeFile(f.reportPath, r.WriteHTML))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	switch {
	case r.Interrupted:
		return errors.New("load: interrupted: the figures above are what was measured until then")
	case r.ErrorCount > 0:
		return fmt.Errorf("load: %d deliveries or calls failed", r.ErrorCount)
	}
	return nil
}

// parseRate reads "5", "5/s", "300/m" or "300/min" as calls per second.
func parseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v <= 0 || v > 1e5 {
		return 0, fmt.Errorf("%q: want calls per second above 0, e.g. 5 or 5/s or 120/m", s)
	}
	switch strings.TrimSpace(unit) {
	case "", "s", "sec":
		return v, nil
	case "m", "min":
		return v / 60, nil
	}
	return 0, fmt.Errorf("%q: unit %q: want /s or /m", s, unit)
}

// splitWeight splits "path:3" into the path and its weight (1 when none is given). A path
// that exists as written is never split.
func splitWeight(arg string) (string, int, error) {
	i := strings.LastIndex(arg, ":")
	if i < 0 {
		return arg, 1, nil
	}
	if _, err := os.Stat(arg); err == nil {
		return arg, 1, nil
	}
	w, err := strconv.Atoi(arg[i+1:])
	if err != nil {
		return arg, 1, nil // not a weight: the path is reported missing when read
	}
	if w < 1 || w > loadgen.MaxWeight {
		return "", 0, fmt.Errorf("%s: weight %d: want 1 to %d", arg, w, loadgen.MaxWeight)
	}
	return arg[:i], w, nil
}

// loadHTTPClient keeps up to conns connections open to the brain, as Saperly reuses them.
func loadHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(conns, 2)
	tr.MaxIdleConnsPerHost = max(conns, 2)
	tr.DisableCompression = true
	tr.ResponseHeaderTimeout = 30 * time.Second // a brain starts its answer at once (a 200 and then lines)
	return &http.Client{Transport: tr}
}

// writeFile writes a report through write, into a file created next to path and renamed
// over it, so a reader never sees half a report.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // gone after the rename; removes what a failure left
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// showProgress draws a live progress display of e on w until the returned function is
// called: a bar of calls done (or of time, for a run by duration), calls in progress,
// errors and the current first-line latency. The figures are read when the display is
// drawn, so the calls never wait on it.
func showProgress(w io.Writer, e *loadgen.Engine) (stop func()) {
	p := mpb.New(mpb.WithOutput(w), mpb.WithAutoRefresh(), mpb.WithRefreshRate(200*time.Millisecond), mpb.WithWidth(100))
	l0 := e.Live()
	total := int64(l0.Target)
	byTime := total == 0
	if byTime {
		total = int64(l0.Until / time.Millisecond)
	}
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			l := e.Live()
			if byTime {
				return fmt.Sprintf("%s/%s", min(l.Elapsed, l0.Until).Truncate(time.Second), l0.Until) // then the calls in progress finish
			}
			return fmt.Sprintf("calls %d/%d", l.Done, l.Target)
		}, decor.WC{W: 16, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			l := e.Live()
			fl := "-"
			if l.FirstLine > 0 {
				fl = l.FirstLine.Round(time.Millisecond).String()
			}
			return fmt.Sprintf("active %d  turns %d  errors %d  first line %s", l.Active, l.Turns, l.Errors, fl)
		})),
	)
	progress := func() int64 {
		l := e.Live()
		if byTime {
			return min(int64(l.Elapsed/time.Millisecond), total)
		}
		return int64(l.Done)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			bar.SetCurrent(progress())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		if cur := progress(); cur < total {
			bar.SetCurrent(cur)
			bar.Abort(false) // stopped early (Ctrl-C, skipped calls): keep the bar where it is
		} else {
			bar.SetCurrent(total)
		}
		p.Wait()
	}
}
