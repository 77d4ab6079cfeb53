package prompts

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// templateName names every prompt template; errors are rewritten to name the file instead.
const templateName = "prompt"

// callFields are the fields a template may read on its dot, from renderData.
var callFields = exportedFields(renderData{})

// inspect walks the parsed prompt. Rendering with sample data only visits the branches the
// sample takes, so a field or variable inside {{if .Returning}} would otherwise go unchecked
// until a returning caller rang. It reports unknown fields of the call anywhere they are
// written, and returns every .Vars reference: refs where the dot is certainly the call (each
// must be set by the agent or the line), names for all of them.
func inspect(path string, t *template.Template) (refs []varRef, names []string, errs []*FileError) {
	w := walker{path: path, tree: t.Tree}
	w.list(t.Tree.Root, true)
	// Templates declared with {{define}} receive whatever dot they are given: only their
	// variable names are collected.
	for _, sub := range t.Templates() {
		if sub.Name() != templateName && sub.Tree != nil {
			sw := walker{path: path, tree: sub.Tree, loose: true}
			sw.list(sub.Tree.Root, false)
			w.names = append(w.names, sw.names...)
		}
	}
	for _, r := range w.refs {
		w.names = append(w.names, r.name)
	}
	slices.Sort(w.names)
	return w.refs, slices.Compact(w.names), w.errs
}

type walker struct {
	path  string
	tree  *parse.Tree
	loose bool
	refs  []varRef
	names []string
	errs  []*FileError
}

// list walks nodes; root says whether the dot is the call.
func (w *walker) list(l *parse.ListNode, root bool) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		w.node(n, root)
	}
}

func (w *walker) node(n parse.Node, root bool) {
	switch n := n.(type) {
	case *parse.ActionNode:
		w.pipe(n.Pipe, root)
	case *parse.IfNode:
		w.branch(&n.BranchNode, root, root)
	case *parse.WithNode:
		w.branch(&n.BranchNode, root, false) // inside, the dot is the pipeline's value
	case *parse.RangeNode:
		w.branch(&n.BranchNode, root, false)
	case *parse.TemplateNode:
		w.pipe(n.Pipe, root)
	case *parse.ListNode:
		w.list(n, root)
	}
}

// branch walks an if, with or range: the pipeline and the else part see the outer dot.
func (w *walker) branch(b *parse.BranchNode, root, inner bool) {
	w.pipe(b.Pipe, root)
	w.list(b.List, inner)
	w.list(b.ElseList, root)
}

func (w *walker) pipe(p *parse.PipeNode, root bool) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		w.index(c, root)
		for _, arg := range c.Args {
			w.arg(arg, root)
		}
	}
}

// index records {{index .Vars "name"}}, which text/template lets through silently when the
// variable is missing.
func (w *walker) index(c *parse.CommandNode, root bool) {
	if len(c.Args) != 3 {
		return
	}
	fn, ok := c.Args[0].(*parse.IdentifierNode)
	key, isStr := c.Args[2].(*parse.StringNode)
	if !ok || fn.Ident != "index" || !isStr {
		return
	}
	var ident []string
	switch m := c.Args[1].(type) {
	case *parse.FieldNode:
		if root {
			ident = m.Ident
		}
	case *parse.VariableNode:
		if m.Ident[0] == "$" && !w.loose {
			ident = m.Ident[1:]
		}
	}
	if len(ident) == 1 && ident[0] == "Vars" {
		w.refs = append(w.refs, varRef{name: key.Text, line: w.line(key)})
	}
}

func (w *walker) arg(n parse.Node, root bool) {
	switch n := n.(type) {
	case *parse.FieldNode:
		if root {
			w.field(n, n.Ident)
		} else if len(n.Ident) > 1 && n.Ident[0] == "Vars" {
			w.names = append(w.names, n.Ident[1])
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" && !w.loose {
			w.field(n, n.Ident[1:]) // $ is always the call
		}
	case *parse.PipeNode:
		w.pipe(n, root)
	case *parse.ChainNode:
		w.arg(n.Node, root)
	}
}

// field checks a field chain read on the call, like .Vars.hours or .Now.Year.
func (w *walker) field(n parse.Node, ident []string) {
	line := w.line(n)
	if !slices.Contains(callFields, ident[0]) {
		w.errs = append(w.errs, fileErr(w.path, line, "unknown field .%s (a call has %s)", ident[0], fieldList()))
		return
	}
	if ident[0] == "Vars" && len(ident) > 1 {
		w.refs = append(w.refs, varRef{name: ident[1], line: line})
	}
}

func (w *walker) line(n parse.Node) int {
	loc, _ := w.tree.ErrorContext(n) // "prompt:7:12"
	parts := strings.Split(loc, ":")
	if len(parts) < 2 {
		return 0
	}
	line, _ := strconv.Atoi(parts[len(parts)-2])
	return line
}

func fieldList() string {
	f := make([]string, len(callFields))
	for i, n := range callFields {
		f[i] = "." + n
	}
	return strings.Join(f, ", ")
}

// Sample is the made-up call every agent is rendered with when it is loaded and checked: an
// inbound call from a new caller on line lineID (or a placeholder line id when lineID is ""),
// with vars as the line's vars, on a Monday at 2:30 PM UTC (2 March 2026).
func Sample(lineID string, vars map[string]string) CallData {
	if lineID == "" {
		lineID = "sample-line"
	}
	return CallData{
		CallID: "sample-call", LineID: lineID, Caller: "+15555550123", Called: "+15555550100",
		Direction: "inbound", Vars: vars, Now: time.Date(2026, time.March, 2, 14, 30, 0, 0, time.UTC),
	}
}

// checkRender renders an agent for one line (lineID "" for calls on lines not in lines.yaml)
// with the line's vars. When anyVars is set the agent is used by no line, so any line may
// later give its variables: only the rest is checked. Problems name the agent's file and line;
// where says which rendering failed.
func checkRender(a *Agent, lineID string, lineVars map[string]string, anyVars bool) []*FileError {
	merged := mergeVars(a.Settings.Vars, lineVars)
	var errs []*FileError
	where := ""
	if lineID != "" {
		where = fmt.Sprintf(" when rendered for line %s of %s", lineID, linesFile)
	}
	seen := make(map[string]bool)
	for _, r := range a.refs {
		if _, ok := merged[r.name]; ok || seen[r.name] {
			continue
		}
		seen[r.name] = true
		if anyVars {
			continue
		}
		hint := "give it a default under vars in the front matter"
		if lineID != "" {
			hint = "add it to that line's vars or give it a default under vars in the front matter"
		}
		errs = append(errs, fileErr(a.Source, r.line, ".Vars.%s is not set%s: %s", r.name, where, hint))
	}
	if len(errs) > 0 {
		return errs
	}
	if anyVars {
		for _, n := range a.names {
			if _, ok := merged[n]; !ok {
				merged[n] = "<" + n + ">"
			}
		}
	}
	// Two calls, so both sides of the usual {{if .Returning}} and direction tests run.
	first := Sample(lineID, merged)
	second := first
	second.Direction, second.Returning = "outbound", true
	for _, d := range []CallData{first, second} {
		if _, err := a.Render(d); err != nil {
			line, msg := splitTemplateError(templateMessage(err))
			return []*FileError{fileErr(a.Source, line, "template: %s%s", msg, where)}
		}
	}
	return nil
}

// templateMessage is the text/template message inside a render error, with its line.
func templateMessage(err error) string {
	var ee template.ExecError
	if errors.As(err, &ee) {
		return ee.Err.Error()
	}
	return err.Error()
}

// exportedFields lists the exported field names of a struct value.
func exportedFields(v any) []string {
	t := reflect.TypeOf(v)
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, f.Name)
		}
	}
	return names
}

// yamlKeys lists the yaml tag names of a struct value, in field order.
func yamlKeys(v any) []string {
	t := reflect.TypeOf(v)
	var keys []string
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}
