package prompts

import (
	_ "embed" // the built-in default agent
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// DefaultName is the agent used for lines that name no other.
const DefaultName = "default"

// embeddedSource is the Source of the built-in default agent.
const embeddedSource = "embedded"

//go:embed default.md
var embeddedDefault []byte

// agentNameRe is what a file name (without .md) must be to name an agent in lines.yaml.
var agentNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Library is one consistent snapshot of the directory. Immutable; safe for concurrent use.
type Library struct {
	dir    string
	agents map[string]*Agent
	lines  *lineSet
}

// Load reads every <name>.md in dir as the agent name, and lines.yaml, and checks them all: the
// front matters, the tools, and every template rendered with sample values for each line that
// uses it. It is strict: any invalid file is an error, errors.Join of every problem (each a
// *FileError reading "path:line: msg"). A missing dir, or one without default.md, gets the
// embedded default agent; Embedded reports that.
func Load(dir string) (*Library, error) {
	files, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	errs := files.errs
	agents := make(map[string]*Agent)
	failed := make(map[string]bool)
	for _, f := range files.agents {
		a, perrs := parseAgent(f.name, f.path, f.raw)
		if len(perrs) > 0 {
			errs = append(errs, perrs...)
			failed[f.name] = true
			continue
		}
		agents[f.name] = a
	}
	if _, ok := agents[DefaultName]; !ok && !failed[DefaultName] {
		def, err := builtIn()
		if err != nil {
			return nil, err
		}
		agents[DefaultName] = def
	}
	lines := &lineSet{}
	if files.lines != nil {
		ls, lerrs := parseLines(files.lines.path, files.lines.raw)
		if len(lerrs) > 0 {
			errs = append(errs, lerrs...)
		} else {
			lines = ls
		}
	}
	for _, p := range validate(agents, lines, failed) {
		errs = append(errs, p.err)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return &Library{dir: dir, agents: agents, lines: lines}, nil
}

func joinErrors(errs []*FileError) error {
	sortErrors(errs)
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// builtIn parses the embedded default agent. It is checked like any file, with no line vars;
// a test keeps it valid, so an error here means a broken build.
func builtIn() (*Agent, error) {
	a, errs := parseAgent(DefaultName, embeddedSource, embeddedDefault)
	if len(errs) == 0 {
		errs = checkRender(a, "", nil, false)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("built-in default agent: %w", joinErrors(errs))
	}
	return a, nil
}

// Default returns the default agent.
func (l *Library) Default() *Agent { return l.agents[DefaultName] }

// Agent returns the named agent.
func (l *Library) Agent(name string) (*Agent, bool) {
	a, ok := l.agents[name]
	return a, ok
}

// ForLine returns the agent answering lineID's calls, and the line's entry in lines.yaml. A
// line that is not listed gets the default agent and a Line with only its ID set (so the global
// secret and no line vars).
func (l *Library) ForLine(lineID string) (*Agent, Line) {
	if ln, ok := l.lines.lines[lineID]; ok {
		if a, ok := l.agents[ln.Agent]; ok { // always: the loader checks every line's agent
			return a, ln
		}
	}
	return l.Default(), Line{ID: lineID}
}

// Line returns lineID's entry in lines.yaml.
func (l *Library) Line(lineID string) (Line, bool) {
	ln, ok := l.lines.lines[lineID]
	return ln, ok
}

// Lines returns every entry of lines.yaml, sorted by line id.
func (l *Library) Lines() []Line { return l.lines.sorted() }

// Names lists the loaded agents, sorted.
func (l *Library) Names() []string { return slices.Sorted(maps.Keys(l.agents)) }

// Embedded reports whether the default agent is the built-in one.
func (l *Library) Embedded() bool { return l.Default().Source == embeddedSource }

// Example is one rendering the loader checks: an agent with the sample call of one line.
type Example struct {
	Agent *Agent
	Line  Line     // the line; only its ID is set for calls on lines not in lines.yaml
	Call  CallData // Sample for that line, with the line's vars
}

// Examples lists what Load rendered to check the library, agent by agent in name order: the
// default agent for lines not in lines.yaml, then each agent for every line that uses it. An
// agent no line uses is rendered once with a placeholder "<name>" for each variable the agent
// does not set itself.
func (l *Library) Examples() []Example {
	var out []Example
	for _, name := range l.Names() {
		a := l.agents[name]
		if name == DefaultName {
			out = append(out, Example{Agent: a, Line: Line{ID: Sample("", nil).LineID}, Call: Sample("", nil)})
		}
		used := false
		for _, ln := range l.Lines() {
			if ln.Agent == name {
				used = true
				out = append(out, Example{Agent: a, Line: ln, Call: Sample(ln.ID, ln.Vars)})
			}
		}
		if !used && name != DefaultName {
			vars := make(map[string]string)
			for _, n := range a.names {
				if _, ok := a.Settings.Vars[n]; !ok {
					vars[n] = "<" + n + ">"
				}
			}
			out = append(out, Example{Agent: a, Line: Line{ID: Sample("", nil).LineID}, Call: Sample("", vars)})
		}
	}
	return out
}

// problem is one reason a set of agents and lines does not hold together.
type problem struct {
	err          *FileError
	agent        string // the agent whose template failed, or ""
	lineID       string // the line it failed for, or ""
	unknownAgent bool   // lineID names an agent that does not exist
}

// validate checks agents and lines together: every line names a loaded agent, every agent
// renders for every line that uses it (with that line's vars), and the default agent renders
// for lines not in lines.yaml. Agents in failed have a file that did not parse.
func validate(agents map[string]*Agent, lines *lineSet, failed map[string]bool) []problem {
	var out []problem
	for _, ln := range lines.sorted() {
		a, ok := agents[ln.Agent]
		if !ok {
			known := "none loaded"
			if len(agents) > 0 {
				known = "agents: " + strings.Join(slices.Sorted(maps.Keys(agents)), ", ")
			}
			err := fileErr(lines.path, lines.at[ln.ID], "line %s: unknown agent %q (%s)", ln.ID, ln.Agent, known)
			if failed[ln.Agent] {
				err = fileErr(lines.path, lines.at[ln.ID], "line %s: agent %q did not load: fix %s.md", ln.ID, ln.Agent, ln.Agent)
			}
			out = append(out, problem{err: err, lineID: ln.ID, unknownAgent: true})
			continue
		}
		for _, e := range checkRender(a, ln.ID, ln.Vars, false) {
			out = append(out, problem{err: e, agent: a.Name, lineID: ln.ID})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(agents)) {
		a := agents[name]
		switch {
		case name == DefaultName:
			for _, e := range checkRender(a, "", nil, false) {
				out = append(out, problem{err: e, agent: name})
			}
		case !lines.uses(name):
			for _, e := range checkRender(a, "", nil, true) {
				out = append(out, problem{err: e, agent: name})
			}
		}
	}
	return out
}

// dirFiles is what one read of the prompts directory found.
type dirFiles struct {
	missing bool
	agents  []fileData // sorted by name
	lines   *fileData  // nil without lines.yaml
	errs    []*FileError
}

type fileData struct {
	name, path string
	raw        []byte
}

// readDir reads every agent file and lines.yaml. Files whose name starts with "." are editors'
// and Kubernetes' own (.#x.md locks, ..data links) and are skipped. A missing dir is not an
// error: the caller falls back on the embedded default.
func readDir(dir string) (dirFiles, error) {
	var out dirFiles
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		out.missing = true
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("read prompts dir %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, "."):
			continue
		case name == "lines.yml":
			out.errs = append(out.errs, fileErr(path, 0, "rename it to %s: only that name is read", linesFile))
			continue
		case name != linesFile && filepath.Ext(name) != ".md":
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			out.errs = append(out.errs, fileErr(path, 0, "unreadable: %v", err))
			continue
		}
		if name == linesFile {
			out.lines = &fileData{name: name, path: path, raw: raw}
			continue
		}
		agent := strings.TrimSuffix(name, ".md")
		if !agentNameRe.MatchString(agent) {
			out.errs = append(out.errs, fileErr(path, 0, "agent name %q: name the file with letters, digits, '.', '_' or '-' (it names the agent in %s)", agent, linesFile))
			continue
		}
		out.agents = append(out.agents, fileData{name: agent, path: path, raw: raw})
	}
	return out, nil
}
