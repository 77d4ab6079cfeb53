package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// WriteHTML writes the report as one self-contained HTML page: the headline figures, then
// charts drawn as inline SVG (first-line latency distribution, percentiles over time, calls in
// progress and throughput over time, errors over time). It loads nothing from anywhere.
func (r *Report) WriteHTML(w io.Writer) error {
	xs := make([]float64, len(r.Series))
	p50, p90, p99 := make([]float64, len(r.Series)), make([]float64, len(r.Series)), make([]float64, len(r.Series))
	active, turns := make([]float64, len(r.Series)), make([]float64, len(r.Series))
	kinds := map[ErrorKind]bool{}
	for i, s := range r.Series {
		xs[i] = float64(s.T)
		p50[i], p90[i], p99[i] = nan0(s.FirstLineP50Ms), nan0(s.FirstLineP90Ms), nan0(s.FirstLineP99Ms)
		active[i], turns[i] = float64(s.PeakActive), float64(s.Turns)
		for k := range s.Errors {
			kinds[k] = true
		}
	}
	var errSeries []series
	for i, k := range slices.Sorted(maps.Keys(kinds)) {
		ys := make([]float64, len(r.Series))
		for j, s := range r.Series {
			ys[j] = float64(s.Errors[k])
		}
		errSeries = append(errSeries, series{Name: string(k), Color: errColors[i%len(errColors)], Ys: ys})
	}
	data := struct {
		R                            *Report
		Headline                     string
		Figures                      []figure
		Latencies                    []latencyRow
		Errors                       []figure
		Dist, Pct, Active, TP, Errs  template.HTML
		HasSeries, HasErrs, HasTurns bool
	}{
		R: r, Headline: r.Headline(), HasSeries: len(r.Series) > 0, HasErrs: r.ErrorCount > 0, HasTurns: r.FirstLine.Count > 0,
		Dist: distChart("first-line-distribution", "First-line latency distribution", r.FirstLine),
		Pct: lineChart("first-line-over-time", "First-line latency over time (by second sent)", "ms", xs,
			[]series{{"p50", "#1f77b4", p50}, {"p90", "#ff7f0e", p90}, {"p99", "#d62728", p99}}, false),
		Active: lineChart("concurrency-over-time", "Calls in progress", "calls", xs, []series{{"calls in progress", "#2ca02c", active}}, false),
		TP:     lineChart("throughput-over-time", "Throughput: messages sent per second", "turns/s", xs, []series{{"turns/s", "#9467bd", turns}}, true),
		Errs:   lineChart("errors-over-time", "Errors per second, by kind", "errors", xs, errSeries, true),
	}
	data.Figures = []figure{
		{"calls", fmt.Sprint(r.Calls.Started), fmt.Sprintf("%d completed, %d failed, %d aborted", r.Calls.Completed, r.Calls.Failed, r.Calls.Aborted), ""},
		{"first_line_p50", fmtMs(r.FirstLine.P50Ms), "first line, median", ""},
		{"first_line_p99", fmtMs(r.FirstLine.P99Ms), "first line, p99", ""},
		{"turns_per_s", fmt.Sprintf("%.1f", r.TurnsPerS), "turns per second", ""},
		{"peak_active", fmt.Sprint(r.PeakActive), "calls at once, peak", ""},
		{"errors", fmt.Sprint(r.ErrorCount), "errors", bad(r.ErrorCount)},
		{"holding_phrases", fmt.Sprint(r.Holds), "holding phrases", ""},
		{"apologies", fmt.Sprint(r.Apologies), "apologies", bad(r.Apologies)},
		{"silent_turns", fmt.Sprint(r.Silent), "silent turns", bad(r.Silent)},
		{"budget_misses", fmt.Sprint(r.Budget.GapMisses + r.Budget.TurnMisses + r.Budget.CharMisses),
			fmt.Sprintf("budget misses (gap > %s, turn > %s, > %d chars)", fmtSeconds(r.Budget.GapS), fmtSeconds(r.Budget.TurnS), r.Budget.Chars),
			bad(r.Budget.GapMisses + r.Budget.TurnMisses + r.Budget.CharMisses)},
	}
	for _, l := range []struct {
		name string
		v    Latency
	}{{"first line", r.FirstLine}, {"gap between lines", r.Gap}, {"whole turn", r.Turn}} {
		data.Latencies = append(data.Latencies, latencyRow{l.name, []string{
			fmtMs(l.v.MinMs), fmtMs(l.v.P50Ms), fmtMs(l.v.P90Ms), fmtMs(l.v.P95Ms), fmtMs(l.v.P99Ms), fmtMs(l.v.P999Ms), fmtMs(l.v.MaxMs),
		}, l.v.Count})
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		data.Errors = append(data.Errors, figure{string(k), fmt.Sprint(r.Errors[k]), "", "bad"})
	}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}

type figure struct{ ID, Value, Label, Class string }

type latencyRow struct {
	Name   string
	Values []string
	Count  int64
}

func bad(n int) string {
	if n > 0 {
		return "bad"
	}
	return ""
}

func nan0(v float64) float64 {
	if v == 0 {
		return math.NaN() // no answered turn in that second: a gap in the line
	}
	return v
}

var errColors = []string{"#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"}

type series struct {
	Name  string
	Color string
	Ys    []float64
}

// The charts' geometry, in SVG user units.
const (
	chartW, chartH            = 600, 260
	padL, padR, padT, padB    = 56, 16, 34, 40
	plotW, plotH              = chartW - padL - padR, chartH - padT - padB
	axisColor, gridColor, ink = "#555", "#e4e4e4", "#222"
)

// lineChart draws ys over xs for each series (bars when bars is set), with a y axis from 0.
func lineChart(id, title, unit string, xs []float64, ss []series, bars bool) template.HTML {
	var b strings.Builder
	open(&b, id, title)
	ymax := 0.0
	for i := range xs {
		sum := 0.0
		for _, s := range ss {
			if y := s.Ys[i]; !math.IsNaN(y) {
				if bars {
					sum += y
				} else {
					sum = max(sum, y)
				}
			}
		}
		ymax = max(ymax, sum)
	}
	if len(xs) == 0 || ymax == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" font-size="14">none in this run</text>`, chartW/2-50, chartH/2, axisColor)
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	top := niceTop(ymax)
	xmax := max(xs[len(xs)-1]+1, 1)
	px := func(x float64) float64 { return padL + x/xmax*plotW }
	py := func(y float64) float64 { return padT + plotH - y/top*plotH }
	axes(&b, top, unit, xmax, "s")
	if bars {
		// Stacked: each second's bar holds every series on top of the one before.
		bw := max(plotW/xmax-1, 0.5)
		base := make([]float64, len(xs))
		for _, s := range ss {
			for i, y := range s.Ys {
				if y > 0 && !math.IsNaN(y) {
					fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`,
						px(xs[i]), py(base[i]+y), bw, py(base[i])-py(base[i]+y), s.Color)
					base[i] += y
				}
			}
		}
	} else {
		for _, s := range ss {
			var d strings.Builder
			pen := "M"
			for i, y := range s.Ys {
				if math.IsNaN(y) {
					pen = "M"
					continue
				}
				fmt.Fprintf(&d, "%s%.1f %.1f ", pen, px(xs[i]+0.5), py(y))
				pen = "L"
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.TrimSpace(d.String()), s.Color)
		}
	}
	legend(&b, ss)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// distChart draws a latency histogram's buckets as bars on a log-spaced axis, with its p50,
// p90 and p99 marked.
func distChart(id, title string, l Latency) template.HTML {
	var b strings.Builder
	open(&b, id, title)
	if len(l.Buckets) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" font-size="14">no turn was answered</text>`, chartW/2-70, chartH/2, axisColor)
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	var top int64
	for _, k := range l.Buckets {
		top = max(top, k.Count)
	}
	ytop := niceTop(float64(top))
	n := float64(len(l.Buckets))
	lo, hi := math.Log(l.Buckets[0].FromMs), math.Log(l.Buckets[len(l.Buckets)-1].UpToMs)
	if hi <= lo || l.Buckets[0].FromMs <= 0 {
		lo, hi = 0, 1
	}
	px := func(ms float64) float64 {
		if ms <= 0 {
			return padL
		}
		return padL + (math.Log(ms)-lo)/(hi-lo)*plotW
	}
	py := func(y float64) float64 { return padT + plotH - y/ytop*plotH }
	gridY(&b, ytop, "turns")
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`, padL, padT+plotH, padL+plotW, padT+plotH, axisColor)
	for i, k := range l.Buckets {
		x0 := padL + float64(i)/n*plotW
		if k.Count > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f77b4"><title>%s–%s: %d</title></rect>`,
				x0+0.5, py(float64(k.Count)), plotW/n-1, py(0)-py(float64(k.Count)), fmtMs(k.FromMs), fmtMs(k.UpToMs), k.Count)
		}
		if i%4 == 0 || i == len(l.Buckets)-1 {
			edge, at := k.FromMs, x0
			if i == len(l.Buckets)-1 {
				edge, at = k.UpToMs, padL+plotW
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="%s">%s</text>`, at, padT+plotH+16, axisColor, fmtMs(edge))
		}
	}
	// The percentiles: dashed lines, named in a legend at the top right.
	lx := float64(padL + plotW)
	marks := []struct {
		name  string
		ms    float64
		color string
	}{{"p50", l.P50Ms, "#2ca02c"}, {"p90", l.P90Ms, "#ff7f0e"}, {"p99", l.P99Ms, "#d62728"}}
	for i := len(marks) - 1; i >= 0; i-- {
		m := marks[i]
		x := px(m.ms)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3" stroke-width="1.5"/>`, x, padT, x, padT+plotH, m.color)
		label := m.name + " " + fmtMs(m.ms)
		fmt.Fprintf(&b, `<text x="%.1f" y="18" font-size="12" font-weight="bold" fill="%s" text-anchor="end">%s</text>`, lx, m.color, label)
		lx -= float64(7*len(label) + 12)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="%s">first-line latency (log scale)</text>`, padL+plotW/2, chartH-6, axisColor)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func open(b *strings.Builder, id, title string) {
	fmt.Fprintf(b, `<svg data-chart="%s" role="img" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">`,
		template.HTMLEscapeString(id), chartW, chartH, chartW, chartH)
	fmt.Fprintf(b, `<title>%s</title><text x="%d" y="18" font-size="14" font-weight="bold" fill="%s">%s</text>`,
		template.HTMLEscapeString(title), padL, ink, template.HTMLEscapeString(title))
}

// axes draws the y grid and the x axis in seconds.
func axes(b *strings.Builder, top float64, unit string, xmax float64, xunit string) {
	gridY(b, top, unit)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`, padL, padT+plotH, padL+plotW, padT+plotH, axisColor)
	step := niceCeil(xmax / 6)
	for x := 0.0; x <= xmax; x += step {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="%s">%g%s</text>`, padL+x/xmax*plotW, padT+plotH+16, axisColor, x, xunit)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="%s">time since the start</text>`, padL+plotW/2, chartH-6, axisColor)
}

func gridY(b *strings.Builder, top float64, unit string) {
	step := niceCeil(top / 4)
	for v := 0.0; v <= top*1.0001; v += step {
		y := padT + plotH - v/top*plotH
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`, padL, y, padL+plotW, y, gridColor)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="%s">%s</text>`, padL-4, y+4, axisColor, fmtNum(v))
	}
	fmt.Fprintf(b, `<text x="12" y="%d" font-size="11" fill="%s" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>`, padT+plotH/2, axisColor, padT+plotH/2, template.HTMLEscapeString(unit))
}

func legend(b *strings.Builder, ss []series) {
	x := padL + plotW
	for i := len(ss) - 1; i >= 0; i-- {
		w := 18 + 7*len(ss[i].Name)
		x -= w
		fmt.Fprintf(b, `<rect x="%d" y="24" width="10" height="10" fill="%s"/><text x="%d" y="33" font-size="11" fill="%s">%s</text>`,
			x, ss[i].Color, x+13, ink, template.HTMLEscapeString(ss[i].Name))
	}
}

// niceTop is the top of an axis holding v: a whole number of nice steps (niceCeil of a
// quarter of it), so the grid lines fall on round values.
func niceTop(v float64) float64 {
	step := niceCeil(v / 4)
	return math.Max(math.Ceil(v/step), 1) * step
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>callbrain load run {{.R.Start.Format "2006-01-02 15:04 UTC"}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1260px}
h1{font-size:22px;margin:0 0 4px} .sub{color:#555;margin:0 0 16px}
.figs{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 18px}
.fig{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.fig b{display:block;font-size:22px} .fig span{color:#555;font-size:12px}
.fig.bad{border-color:#d62728;background:#fff3f3} .fig.bad b{color:#d62728}
.charts{display:grid;grid-template-columns:repeat(2,600px);gap:14px 24px}
table{border-collapse:collapse;margin:0 0 18px} td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left} .warn{color:#d62728;font-weight:bold}
ul{margin:4px 0 16px} code{font-size:12px}
</style></head><body>
<h1>callbrain load run</h1>
<p class="sub">{{if .R.Target}}against <code>{{.R.Target}}</code> · {{end}}{{.R.Start.Format "2006-01-02 15:04:05 UTC"}} · <span id="headline">{{.Headline}}</span>{{if .R.Note}}<br>{{.R.Note}}{{end}}</p>
{{if .R.Interrupted}}<p class="warn" id="interrupted">Interrupted (Ctrl-C): these are the figures measured until then.</p>{{end}}
<div class="figs">{{range .Figures}}<div class="fig {{.Class}}" data-figure="{{.ID}}"><b>{{.Value}}</b><span>{{.Label}}</span></div>{{end}}</div>
<table id="latencies"><tr><th>latency</th><th>min</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>count</th></tr>
{{range .Latencies}}<tr><td>{{.Name}}</td>{{range .Values}}<td>{{.}}</td>{{end}}<td>{{.Count}}</td></tr>{{end}}</table>
{{if .HasErrs}}<p id="errors"><b>Errors by kind:</b> {{range .Errors}}<span class="warn" data-error="{{.ID}}">{{.ID}} {{.Value}}</span> {{end}}</p>
{{if .R.ErrorSamples}}<ul>{{range .R.ErrorSamples}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}{{end}}
<div class="charts">
{{.Dist}}
{{.Pct}}
{{.Active}}
{{.TP}}
{{.Errs}}
</div>
{{if .R.Scripts}}<p class="sub">Scripts: {{range $i, $s := .R.Scripts}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}</p>{{end}}
<p class="sub">First line: from the POST of a message to its first spoken line. Percentiles over time are of the turns sent in each second. Generated by <code>callsim load</code>.</p>
</body></html>
`))
