// Package deps checks the dependency direction of STYLE §2 with `go list -deps`, so a broken
// rule fails CI:
//
//	cmd ──▶ transport ──▶ agent ──▶ session
//	                        └────▶ prompts
//
// Only the non-test files of each package are checked. Packages under test/ are exempt (they
// may drive the brain from any side), but no server code may depend on them; the tool binaries
// under cmd/ (callsim, mockllm) are built on them by design. It imports none of our packages.
package deps

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/callbrain/callbrain"

// Third-party modules with a rule of their own.
const (
	echoPath   = "github.com/labstack/echo"
	redisPath  = "github.com/redis/go-redis"
	openaiPath = "github.com/sashabaranov/go-openai"
	// OpenTelemetry: agent and transport use its API (spans, attributes, the W3C propagator);
	// only cmd builds the SDK's TracerProvider and its OTLP exporter.
	otelSDKPath       = "go.opentelemetry.io/otel/sdk"
	otelExportersPath = "go.opentelemetry.io/otel/exporters"
)

// graph maps an import path to the packages its non-test files import directly.
type graph map[string][]string

// rule forbids some imports to some packages.
type rule struct {
	name string
	// from selects the importing packages the rule applies to.
	from func(pkg string) bool
	// forbid selects the imports the rule forbids.
	forbid func(dep string) bool
	// transitive applies the rule to every dependency reachable from the package, not only
	// to its direct imports; a violation then names the whole import chain.
	transitive bool
}

// rel returns pkg relative to the module ("agent", "cmd/brain"), or "" when it is not ours.
func rel(pkg string) string {
	if r, ok := strings.CutPrefix(pkg, module+"/"); ok {
		return r
	}
	return ""
}

func ours(pkg string) bool { return rel(pkg) != "" || pkg == module }

func is(names ...string) func(string) bool {
	return func(pkg string) bool { return slices.Contains(names, rel(pkg)) }
}

func under(dir string) func(string) bool {
	return func(pkg string) bool { return strings.HasPrefix(rel(pkg), dir+"/") }
}

// within selects the packages of a module: its root path and everything below it.
func within(mod string) func(string) bool {
	return func(pkg string) bool { return pkg == mod || strings.HasPrefix(pkg, mod+"/") }
}

func and(fs ...func(string) bool) func(string) bool {
	return func(p string) bool {
		for _, f := range fs {
			if !f(p) {
				return false
			}
		}
		return true
	}
}

func not(f func(string) bool) func(string) bool { return func(p string) bool { return !f(p) } }

var (
	isCmd   = under("cmd")
	isTest  = under("test")
	isBrain = is("cmd/brain")
	// server is every package linked into the server binary or meant to be: all of ours
	// except the test packages and the tool binaries beside cmd/brain.
	server = and(ours, not(isTest), func(p string) bool { return !isCmd(p) || isBrain(p) })
	// nonTest is every package of ours outside test/.
	nonTest = and(ours, not(isTest))
)

// rules are STYLE §2, one line each.
var rules = []rule{
	{
		name:   "transport imports agent and never session, prompts or any other package of ours",
		from:   is("transport"),
		forbid: and(ours, not(is("agent"))),
	},
	{
		name:   "agent imports only session and prompts of our packages",
		from:   is("agent"),
		forbid: and(ours, not(is("session", "prompts"))),
	},
	{
		name:       "session and prompts import none of our packages",
		from:       is("session", "prompts"),
		forbid:     ours,
		transitive: true,
	},
	{
		name:   "only cmd imports transport",
		from:   and(nonTest, not(isCmd)),
		forbid: is("transport"),
	},
	{
		name:   "nothing imports cmd",
		from:   ours,
		forbid: isCmd,
	},
	{
		name:       "server code never depends on test packages",
		from:       server,
		forbid:     isTest,
		transitive: true,
	},
	{
		name:   "Echo is imported only by transport",
		from:   and(nonTest, not(is("transport"))),
		forbid: within(echoPath),
	},
	{
		name:   "go-redis is imported only by session and cmd",
		from:   and(nonTest, not(is("session")), not(isCmd)),
		forbid: within(redisPath),
	},
	{
		name:   "go-openai is imported only by agent and cmd",
		from:   and(nonTest, not(is("agent")), not(isCmd)),
		forbid: within(openaiPath),
	},
	// The direct rules above let a forbidden module in through a third-party package; these
	// close that door for the packages below transport.
	{
		name:       "agent, session and prompts never depend on Echo",
		from:       is("agent", "session", "prompts"),
		forbid:     within(echoPath),
		transitive: true,
	},
	{
		name:       "session and prompts never depend on go-openai",
		from:       is("session", "prompts"),
		forbid:     within(openaiPath),
		transitive: true,
	},
	{
		name:       "the OpenTelemetry SDK and exporters are used only by cmd: below it, the API alone",
		from:       and(nonTest, not(isCmd)),
		forbid:     func(dep string) bool { return within(otelSDKPath)(dep) || within(otelExportersPath)(dep) },
		transitive: true,
	},
	{
		name:       "prompts never depends on go-redis",
		from:       is("prompts"),
		forbid:     within(redisPath),
		transitive: true,
	},
}

// known reports whether STYLE §2 places pkg: a package it does not know has no rule yet.
func known(pkg string) bool {
	return is("agent", "transport", "session", "prompts")(pkg) || isCmd(pkg) || isTest(pkg)
}

// check returns every violation of rules in g, each naming its import chain, in a stable order.
func check(g graph, rules []rule) []string {
	var out []string
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		if ours(p) && !known(p) {
			out = append(out, "STYLE §2 has no place for "+short(p)+": add it to the layout and to the rules in test/deps")
		}
	}
	for _, r := range rules {
		for _, p := range pkgs {
			if !r.from(p) {
				continue
			}
			for _, chain := range violations(g, p, r) {
				out = append(out, r.name+": "+strings.Join(chain, " → "))
			}
		}
	}
	return out
}

// violations returns, for each dependency of pkg the rule forbids, the shortest import chain
// from pkg to it (short names).
func violations(g graph, pkg string, r rule) [][]string {
	if !r.transitive {
		var out [][]string
		for _, d := range sorted(g[pkg]) {
			if r.forbid(d) {
				out = append(out, []string{short(pkg), short(d)})
			}
		}
		return out
	}
	// Breadth first, so each chain is a shortest one; imports visited in sorted order, so the
	// chain reported is stable.
	parent := map[string]string{pkg: ""}
	queue := []string{pkg}
	var out [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, d := range sorted(g[p]) {
			if _, seen := parent[d]; seen {
				continue
			}
			parent[d] = p
			if r.forbid(d) {
				var chain []string
				for at := d; at != ""; at = parent[at] {
					chain = append(chain, short(at))
				}
				slices.Reverse(chain)
				out = append(out, chain)
				continue // one chain per forbidden package; what it imports is its own problem
			}
			queue = append(queue, d)
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// short names our packages relative to the module, and others in full.
func short(pkg string) string {
	if r := rel(pkg); r != "" {
		return r
	}
	return pkg
}

// listed is the part of `go list -json` output used here.
type listed struct {
	ImportPath string
	Imports    []string
	Error      *struct{ Err string }
}

// loadGraph lists every package of the module and all their dependencies. Extra arguments go
// to go list (an -overlay).
func loadGraph(t *testing.T, args ...string) graph {
	t.Helper()
	args = append([]string{"list", "-e", "-deps", "-json=ImportPath,Imports,Error"}, args...)
	cmd := exec.CommandContext(t.Context(), "go", append(args, module+"/...")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())

	g := graph{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "decode go list output")
		if p.Error != nil && ours(p.ImportPath) {
			// An import cycle or a missing package is a dependency problem too.
			t.Errorf("go list %s: %s", short(p.ImportPath), p.Error.Err)
		}
		g[p.ImportPath] = p.Imports
	}
	return g
}

func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	g := loadGraph(t)
	for _, p := range []string{"agent", "transport", "session", "prompts", "cmd/brain"} {
		require.Contains(t, g, module+"/"+p, "go list did not list %s: the check would pass vacuously", p)
	}
	for _, v := range check(g, rules) {
		t.Error(v)
	}
}

// TestDependencyDirectionCatches runs the real pipeline (go list, then the check) on the module
// with one forbidden import added through a go list overlay, so no file is touched.
func TestDependencyDirectionCatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	abs, err := filepath.Abs(filepath.Join("..", "..", "transport", "zz_deps_violation.go"))
	require.NoError(t, err)
	src := filepath.Join(dir, "violation.go")
	require.NoError(t, os.WriteFile(src, []byte("package transport\n\nimport _ \""+module+"/session\"\n"), 0o644))
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {abs: src}})
	require.NoError(t, err)
	ov := filepath.Join(dir, "overlay.json")
	require.NoError(t, os.WriteFile(ov, overlay, 0o644))

	got := check(loadGraph(t, "-overlay", ov), rules)
	assert.Contains(t, got, "transport imports agent and never session, prompts or any other package of ours: transport → session")
}

// TestCheck proves the checker catches each kind of violation, on made-up graphs.
func TestCheck(t *testing.T) {
	t.Parallel()
	m := func(p string) string { return module + "/" + p }
	const echo = "github.com/labstack/echo/v4"
	const rds = "github.com/redis/go-redis/v9"
	const oai = "github.com/sashabaranov/go-openai"
	// clean is the layout as it should be; each case changes one thing.
	clean := func() graph {
		return graph{
			m("cmd/brain"):    {m("transport"), m("agent"), m("session"), m("prompts"), rds, "os"},
			m("cmd/mockllm"):  {m("test/mockllm"), "net/http"},
			m("cmd/callsim"):  {m("test/saperly")},
			m("transport"):    {m("agent"), echo, "net/http"},
			m("agent"):        {m("session"), m("prompts"), oai, "context"},
			m("session"):      {rds, "context"},
			m("prompts"):      {"embed"},
			m("test/mockllm"): {m("agent"), "net/http"},
			m("test/saperly"): {m("transport")},
			m("test/e2e"):     {m("test/saperly"), m("session"), rds, oai, echo},
			echo:              {"net/http"},
			rds:               {"net"},
			oai:               {"net/http"},
			"net/http":        {"net"},
		}
	}
	tests := []struct {
		name   string
		change func(graph)
		want   []string // each must appear in one violation; none means a clean graph
	}{
		{name: "clean", change: func(graph) {}},
		{
			name: "agent and transport use the OpenTelemetry API, cmd its SDK",
			change: func(g graph) {
				g[m("agent")] = append(g[m("agent")], "go.opentelemetry.io/otel/trace")
				g[m("transport")] = append(g[m("transport")], "go.opentelemetry.io/otel/trace")
				g[m("cmd/brain")] = append(g[m("cmd/brain")], "go.opentelemetry.io/otel/sdk/trace")
			},
		},
		{
			name: "transport reaches the OpenTelemetry exporter",
			change: func(g graph) {
				g[m("transport")] = append(g[m("transport")], "example.com/obs")
				g["example.com/obs"] = []string{"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"}
			},
			want: []string{"the OpenTelemetry SDK and exporters are used only by cmd: below it, the API alone: transport → example.com/obs → go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"},
		},
		{
			name:   "transport imports session",
			change: func(g graph) { g[m("transport")] = append(g[m("transport")], m("session")) },
			want:   []string{"transport imports agent and never session, prompts or any other package of ours: transport → session"},
		},
		{
			name:   "transport imports prompts",
			change: func(g graph) { g[m("transport")] = append(g[m("transport")], m("prompts")) },
			want:   []string{"transport → prompts"},
		},
		{
			name:   "agent imports transport",
			change: func(g graph) { g[m("agent")] = append(g[m("agent")], m("transport")) },
			want:   []string{"agent imports only session and prompts of our packages: agent → transport", "only cmd imports transport: agent → transport"},
		},
		{
			name: "session reaches agent through a new package",
			change: func(g graph) {
				g[m("session")] = append(g[m("session")], "example.com/lib")
				g["example.com/lib"] = []string{m("agent")}
			},
			want: []string{"session and prompts import none of our packages: session → example.com/lib → agent"},
		},
		{
			name:   "prompts imports session",
			change: func(g graph) { g[m("prompts")] = []string{m("session")} },
			want:   []string{"prompts → session"},
		},
		{
			name:   "a test package imports cmd",
			change: func(g graph) { g[m("test/e2e")] = append(g[m("test/e2e")], m("cmd/brain")) },
			want:   []string{"nothing imports cmd: test/e2e → cmd/brain"},
		},
		{
			name:   "server code reaches a test package",
			change: func(g graph) { g[m("agent")] = append(g[m("agent")], m("test/mockllm")) },
			want:   []string{"server code never depends on test packages: agent → test/mockllm", "server code never depends on test packages: cmd/brain → agent → test/mockllm"},
		},
		{
			name:   "cmd/brain imports a test package",
			change: func(g graph) { g[m("cmd/brain")] = append(g[m("cmd/brain")], m("test/saperly")) },
			want:   []string{"server code never depends on test packages: cmd/brain → test/saperly"},
		},
		{
			name:   "agent imports Echo",
			change: func(g graph) { g[m("agent")] = append(g[m("agent")], echo) },
			want:   []string{"Echo is imported only by transport: agent → " + echo},
		},
		{
			name:   "cmd imports Echo",
			change: func(g graph) { g[m("cmd/brain")] = append(g[m("cmd/brain")], echo) },
			want:   []string{"Echo is imported only by transport: cmd/brain → " + echo},
		},
		{
			name: "agent reaches Echo through a library",
			change: func(g graph) {
				g[m("agent")] = append(g[m("agent")], "example.com/web")
				g["example.com/web"] = []string{echo}
			},
			want: []string{"agent, session and prompts never depend on Echo: agent → example.com/web → " + echo},
		},
		{
			name:   "agent imports go-redis",
			change: func(g graph) { g[m("agent")] = append(g[m("agent")], rds) },
			want:   []string{"go-redis is imported only by session and cmd: agent → " + rds},
		},
		{
			name:   "transport imports go-openai",
			change: func(g graph) { g[m("transport")] = append(g[m("transport")], oai) },
			want:   []string{"go-openai is imported only by agent and cmd: transport → " + oai},
		},
		{
			name:   "session imports go-openai",
			change: func(g graph) { g[m("session")] = append(g[m("session")], oai) },
			want:   []string{"go-openai is imported only by agent and cmd: session → " + oai},
		},
		{
			name:   "a package outside the layout",
			change: func(g graph) { g[m("metrics")] = []string{"expvar"} },
			want:   []string{"STYLE §2 has no place for metrics"},
		},
		{
			name:   "a new package imports transport",
			change: func(g graph) { g[m("metrics")] = []string{m("transport")} },
			want:   []string{"only cmd imports transport: metrics → transport"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := clean()
			tc.change(g)
			got := check(g, rules)
			if len(tc.want) == 0 {
				assert.Empty(t, got)
				return
			}
			for _, w := range tc.want {
				assert.True(t, slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, w) }),
					"want a violation containing %q, got:\n%s", w, strings.Join(got, "\n"))
			}
		})
	}
}
