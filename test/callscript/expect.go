package callscript

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// expectChecks checks a turn's expectations against its answer and what the Observer saw
// (obs is nil when it could not be asked; obsErr then says why).
func expectChecks(e *Expect, d *Delivery, obs *Observation, obsErr error) []Check {
	var checks []Check
	heard := d.Text()
	lower := strings.ToLower(heard)
	for _, want := range e.Contains {
		checks = append(checks, Check{Name: fmt.Sprintf("contains %q", want),
			OK: strings.Contains(lower, strings.ToLower(want)), Detail: fmt.Sprintf("heard %q", heard)})
	}
	for _, not := range e.NotContains {
		checks = append(checks, Check{Name: fmt.Sprintf("not contains %q", not),
			OK: !strings.Contains(lower, strings.ToLower(not)), Detail: fmt.Sprintf("heard %q", heard)})
	}
	if e.Matches != "" {
		c := Check{Name: fmt.Sprintf("matches %q", e.Matches), Detail: fmt.Sprintf("heard %q", heard)}
		re, err := regexp.Compile(e.Matches)
		if err != nil {
			c.Detail = err.Error()
		} else {
			c.OK = re.MatchString(heard)
		}
		checks = append(checks, c)
	}
	if e.FirstLineWithin > 0 {
		c := Check{Name: "first line within " + e.FirstLineWithin.String()}
		if at, ok := d.FirstLine(); ok {
			c.OK = at <= e.FirstLineWithin
			c.Detail = "first line after " + ms(at)
		} else {
			c.Detail = "no line was spoken"
		}
		checks = append(checks, c)
	}
	if e.NoHold {
		checks = append(checks, flagged("no holding phrase", d.Lines, func(l Line) bool { return l.Hold }))
	}
	if e.NoApology {
		checks = append(checks, flagged("no apology", d.Lines, func(l Line) bool { return l.Apology }))
	}
	tools := func(name string, want bool) Check {
		c := Check{Name: "tool not called " + name}
		if want {
			c.Name = "tool called " + name
		}
		switch {
		case obs == nil:
			c.Detail = "cannot tell: " + obsErr.Error()
		case !obs.ToolsSeen:
			c.Detail = "cannot tell: the observer does not see tool calls"
		default:
			c.OK = slices.Contains(obs.Tools, name) == want
			c.Detail = fmt.Sprintf("tools called: %v", obs.Tools)
		}
		return c
	}
	for _, name := range e.ToolCalled {
		checks = append(checks, tools(name, true))
	}
	for _, name := range e.ToolNotCalled {
		checks = append(checks, tools(name, false))
	}
	if e.EndsCall != nil {
		c := Check{Name: "ends call"}
		if !*e.EndsCall {
			c.Name = "does not end call"
		}
		switch {
		case obs == nil:
			c.Detail = "cannot tell: " + obsErr.Error()
		case !obs.HangSeen:
			c.Detail = "cannot tell: the observer does not see hang-ups"
		default:
			c.OK = obs.HungUp == *e.EndsCall
			c.Detail = map[bool]string{true: "the brain hung up", false: "the brain did not hang up"}[obs.HungUp]
		}
		checks = append(checks, c)
	}
	return checks
}

// flagged passes when no line is flagged, and lists the flagged lines otherwise.
func flagged(name string, lines []Line, is func(Line) bool) Check {
	var bad []string
	for _, l := range lines {
		if is(l) {
			bad = append(bad, fmt.Sprintf("%q at %s", l.Text, ms(l.At)))
		}
	}
	if len(bad) == 0 {
		return Check{Name: name, OK: true}
	}
	return Check{Name: name, Detail: "heard " + strings.Join(bad, ", ")}
}

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
