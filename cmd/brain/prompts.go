package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/callbrain/callbrain/prompts"
)

const promptsUsage = `usage: brain prompts check [-q] [dir]

Checks every agent file and lines.yaml in dir (default: $PROMPTS_DIR, else ./prompts) the way
the brain does when it loads them, and renders each agent with sample call values for every
line that uses it. Prints each rendered prompt, or with -q one line per rendering. Exits 1 when
anything is wrong, printing one "file:line: problem" per line: fit for CI.
`

// promptsCommand runs "brain prompts <subcommand> …" and returns the exit code: 0 when all is
// well, 1 when the prompts are not, 2 for a usage error.
func promptsCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, promptsUsage)
		return 2
	}
	fs := flag.NewFlagSet("brain prompts check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, promptsUsage) }
	quiet := fs.Bool("q", false, "print one summary line per rendering instead of the prompts")
	// Flags may come before or after the dir.
	var dirs []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		dirs = append(dirs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(dirs) > 1 {
		fmt.Fprint(stderr, promptsUsage)
		return 2
	}
	dir := or(getenv("PROMPTS_DIR"), "./prompts")
	if len(dirs) == 1 {
		dir = dirs[0]
	}
	if err := checkPrompts(dir, *quiet, stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// checkPrompts loads dir strictly and prints what each agent renders to. The error lists every
// problem, one per line.
func checkPrompts(dir string, quiet bool, out io.Writer) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s: not a readable directory", dir)
	}
	lib, err := prompts.Load(dir)
	if _, serr := prompts.LoadSources(dir); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		n := strings.Count(err.Error(), "\n") + 1
		return fmt.Errorf("%w\n%s: %d %s", err, dir, n, plural(n, "problem", "problems"))
	}
	var failed []string
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for i, ex := range lib.Examples() {
		text, err := ex.Agent.Render(ex.Call)
		if err != nil { // the loader rendered the same, so this means a bug
			failed = append(failed, fmt.Sprintf("%s: %v", ex.Agent.Source, err))
			continue
		}
		if quiet {
			fmt.Fprintf(tw, "ok\t%s\t%s\t%s\t%s\n", ex.Agent.Name, ex.Agent.Source, ex.Agent.Version, forWhat(lib, ex))
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "==> %s (%s, version %s) %s\n", ex.Agent.Name, ex.Agent.Source, ex.Agent.Version, forWhat(lib, ex))
		if s := settingsSummary(ex.Agent.Settings); s != "" {
			fmt.Fprintf(out, "    %s\n", s)
		}
		fmt.Fprintf(out, "\n%s\n", text)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n"))
	}
	agents, lines := len(lib.Names()), len(lib.Lines())
	note := ""
	if lib.Embedded() {
		note = " (no default.md: the built-in default agent answers lines not in lines.yaml)"
	}
	if !quiet {
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "%s: %d %s, %d %s: all good%s\n", dir, agents, plural(agents, "agent", "agents"),
		lines, plural(lines, "line", "lines"), note)
	return nil
}

// forWhat says which calls a rendering stands for.
func forWhat(lib *prompts.Library, ex prompts.Example) string {
	switch _, listed := lib.Line(ex.Line.ID); {
	case listed:
		return "for line " + ex.Line.ID
	case ex.Agent.Name == prompts.DefaultName:
		return "for lines not in lines.yaml"
	default:
		return "(no line uses it; line variables shown as <name>)"
	}
}

// settingsSummary lists an agent's front matter settings that differ from the brain's.
func settingsSummary(s prompts.Settings) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("model", s.Model)
	add("fallback_model", s.FallbackModel)
	if s.Temperature != nil {
		add("temperature", strconv.FormatFloat(float64(*s.Temperature), 'g', -1, 32))
	}
	if s.MaxTokens > 0 {
		add("max_tokens", strconv.Itoa(s.MaxTokens))
	}
	add("timezone", s.TimeZone)
	var tools []string
	for _, t := range s.Tools {
		tools = append(tools, fmt.Sprintf("%s (%s %s, %s)", t.Name, t.Method, t.URL, t.Timeout))
	}
	if s.EndCall {
		tools = append(tools, prompts.EndCallTool)
	}
	add("tools", strings.Join(tools, ", "))
	return strings.Join(parts, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
