package prompts

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileError is one problem in one file of the prompts directory. Its message reads
// "path:line: what is wrong", the form editors and CI annotations understand.
type FileError struct {
	File string // the file's path, as found in the directory
	Line int    // 1-based line in File; 0 when the problem is not on one line
	Err  error  // what is wrong
}

// Error reads "path:line: what is wrong", or "path: what is wrong" without a line.
func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

// Unwrap returns what is wrong.
func (e *FileError) Unwrap() error { return e.Err }

func fileErr(file string, line int, format string, args ...any) *FileError {
	return &FileError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
}

// sortErrors orders problems by file, then line, so every report reads the same way.
func sortErrors(errs []*FileError) {
	slices.SortStableFunc(errs, func(a, b *FileError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

var (
	// yaml.v3 syntax errors: "yaml: line 3: mapping values are not allowed in this context".
	yamlSyntaxRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	// yaml.v3 type errors, one per entry of TypeError.Errors: "line 4: cannot unmarshal …".
	yamlTypeRe = regexp.MustCompile(`^line (\d+): (.*)$`)
	// text/template errors: "template: prompt:7: unexpected …" when parsing,
	// `template: prompt:7:12: executing "prompt" at <.Vars.x>: map has no entry for key "x"`
	// when executing.
	templateRe = regexp.MustCompile(`^template: ` + templateName + `:(\d+):(?:\d+:)? ?(?:executing "` + templateName + `" )?(.*)$`)
)

// splitYAMLError turns a yaml.v3 message into a line (shifted by offset, the file line before
// the YAML's first line) and the message without its prefix. yaml.v3 leaves the line out when
// the problem is on the first line.
func splitYAMLError(re *regexp.Regexp, msg string, offset int) (int, string) {
	m := re.FindStringSubmatch(msg)
	if m == nil {
		return 1 + offset, strings.TrimPrefix(msg, "yaml: ")
	}
	n, _ := strconv.Atoi(m[1])
	return n + offset, m[2]
}

// yamlParserErrors are the messages of yaml.v3's parser, as opposed to its scanner. The two
// number lines differently: a scanner error's line is 1-based, a parser error's is the
// 0-based line of its context (the "[" of an unclosed flow sequence, say), or, when that is
// the first line, of the problem, so a parser error was reported a line early.
var yamlParserErrors = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// yamlSyntaxError returns the file line (shifted by offset) and the message of a yaml.v3
// syntax error found in raw. raw is parsed again behind one blank line, so that no context
// sits on the first line (where yaml.v3 falls back to the problem's line or to none); then a
// parser error's 0-based line there is the 1-based line in raw, and a scanner error's
// 1-based line is one past it.
func yamlSyntaxError(raw []byte, err error, offset int) (int, string) {
	var doc yaml.Node
	shifted := yaml.Unmarshal(append([]byte("\n"), raw...), &doc)
	if shifted == nil {
		return splitYAMLError(yamlSyntaxRe, err.Error(), offset) // cannot happen: same text
	}
	m := yamlSyntaxRe.FindStringSubmatch(shifted.Error())
	if m == nil {
		return splitYAMLError(yamlSyntaxRe, err.Error(), offset)
	}
	n, _ := strconv.Atoi(m[1])
	if !slices.Contains(yamlParserErrors, m[2]) {
		n--
	}
	return max(n, 1) + offset, m[2]
}

// splitTemplateError finds the template line in a text/template error. Template lines are
// file lines: the body is parsed behind as many newlines as the front matter took.
func splitTemplateError(msg string) (int, string) {
	m := templateRe.FindStringSubmatch(msg)
	if m == nil {
		return 0, strings.TrimPrefix(msg, "template: ")
	}
	n, _ := strconv.Atoi(m[1])
	return n, m[2]
}
