package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// describedNames returns the names of every metric newMetrics registers, from the
// collectors' descriptions (a Vec with no child yet is still described).
func describedNames(t *testing.T) map[string]bool {
	t.Helper()
	var cs capture
	newMetrics(&cs)
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}
	return names
}

// capture is a Registerer that keeps what is registered.
type capture []prometheus.Collector

func (c *capture) Register(col prometheus.Collector) error { *c = append(*c, col); return nil }
func (c *capture) MustRegister(cols ...prometheus.Collector) {
	*c = append(*c, cols...)
}
func (c *capture) Unregister(prometheus.Collector) bool { return false }

// TestDashboardQueriesExistingMetrics: every callbrain_* series the Grafana dashboard queries
// is one the brain exports (histograms through their _bucket, _sum and _count series), every
// metric the docs list is exported, and the dashboard covers first-line latency, silent and
// degraded turns, error rates, active calls and store health.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	t.Parallel()
	names := describedNames(t)
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "callbrain.json"))
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.Panels)
	series := regexp.MustCompile(`\bcallbrain_[a-z_]+`)
	used := map[string]bool{}
	var titles []string
	for _, p := range dash.Panels {
		titles = append(titles, strings.ToLower(p.Title))
		require.NotEmpty(t, p.Targets, "panel %q queries nothing", p.Title)
		for _, tg := range p.Targets {
			for _, s := range series.FindAllString(tg.Expr, -1) {
				base := s
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(s, suf); ok && names[b] {
						base = b
					}
				}
				assert.True(t, names[base], "panel %q queries %s, which the brain does not export", p.Title, s)
				used[base] = true
			}
		}
	}
	for _, want := range []string{"first-line latency", "silent and degraded", "error rates", "active calls", "store health"} {
		assert.True(t, slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, want) }), "no panel on %s", want)
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	require.NoError(t, err)
	for n := range names {
		if strings.HasPrefix(n, "callbrain_") {
			assert.Contains(t, string(doc), "`"+n+"`", "docs/metrics.md does not list %s", n)
		}
	}
	for _, n := range regexp.MustCompile("`(callbrain_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		assert.True(t, names[n[1]], "docs/metrics.md lists %s, which the brain does not export", n[1])
	}
	assert.True(t, used["callbrain_turns_active"])
}
