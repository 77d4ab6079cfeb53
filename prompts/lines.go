package prompts

import (
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"
)

// linesFile is the file in the prompts directory that maps Saperly lines to agents.
const linesFile = "lines.yaml"

// Line is one entry of lines.yaml.
type Line struct {
	ID    string // the Saperly line_id
	Agent string // the agent answering the line's calls; DefaultName when lines.yaml names none
	// SecretEnv and SecretNextEnv are the NAMES of the environment variables holding the
	// line's current and staged-next signing secrets (PROTOCOL.md §1.3); "" means the global
	// secret. Secrets never live in these files.
	SecretEnv, SecretNextEnv string
	Vars                     map[string]string // template variables; they override the agent's
}

type lineSpec struct {
	Agent         string            `yaml:"agent"`
	SecretEnv     string            `yaml:"secret_env"`
	SecretNextEnv string            `yaml:"secret_next_env"`
	Vars          map[string]string `yaml:"vars"`
}

var lineKeys = yamlKeys(lineSpec{})

// lineSet is one version of lines.yaml. The zero value is a directory without one.
type lineSet struct {
	path    string
	version string
	lines   map[string]Line
	at      map[string]int // the file line of each entry
}

func (s *lineSet) sorted() []Line {
	out := make([]Line, 0, len(s.lines))
	for _, id := range slices.Sorted(maps.Keys(s.lines)) {
		out = append(out, s.lines[id])
	}
	return out
}

// uses reports whether any line is answered by the named agent.
func (s *lineSet) uses(agent string) bool {
	for _, l := range s.lines {
		if l.Agent == agent {
			return true
		}
	}
	return false
}

// parseLines reads lines.yaml. Agent names are checked later, against the agents loaded.
func parseLines(path string, raw []byte) (*lineSet, []*FileError) {
	s := &lineSet{path: path, version: version(raw), lines: make(map[string]Line), at: make(map[string]int)}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		line, msg := yamlSyntaxError(raw, err, 0)
		return nil, []*FileError{fileErr(path, line, "%s", msg)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return s, nil // empty, or only comments
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, []*FileError{fileErr(path, root.Line, "must map each line_id to its settings (agent, secret_env, secret_next_env, vars)")}
	}
	var errs []*FileError
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		id := k.Value
		if k.Kind != yaml.ScalarNode || id == "" {
			errs = append(errs, fileErr(path, k.Line, "a line_id must be a non-empty string"))
			continue
		}
		if first, dup := s.at[id]; dup {
			errs = append(errs, fileErr(path, k.Line, "line %s is listed twice (first on line %d)", id, first))
			continue
		}
		s.at[id] = k.Line
		var spec lineSpec
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			// listed with nothing: the default agent and the global secret
		case v.Kind == yaml.MappingNode:
			_, kerrs := checkKeys(path, v, lineKeys, "key of line "+id, 0)
			errs = append(errs, kerrs...)
			if len(kerrs) > 0 {
				continue
			}
			if err := v.Decode(&spec); err != nil {
				errs = append(errs, decodeErrors(path, err, 0)...)
				continue
			}
		default:
			errs = append(errs, fileErr(path, v.Line, "line %s: give it agent, secret_env, secret_next_env or vars as key: value settings", id))
			continue
		}
		keys := keyLines(v, 0)
		at := func(key string) int {
			if l, ok := keys[key]; ok {
				return l
			}
			return k.Line
		}
		for _, e := range []struct{ key, name string }{{"secret_env", spec.SecretEnv}, {"secret_next_env", spec.SecretNextEnv}} {
			// Never echo the value: it may be the secret itself, and this error is logged.
			if why, secret := looksLikeSecret(e.name); secret {
				errs = append(errs, fileErr(path, at(e.key), "line %s: %s "+secretValueError, id, e.key, why))
			} else if e.name != "" && !envRe.MatchString(e.name) {
				errs = append(errs, fileErr(path, at(e.key), "line %s: %s must be the NAME of an environment variable (letters, digits, _), never the secret itself", id, e.key))
			}
		}
		if vars := valueOf(v, "vars"); vars != nil && vars.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(vars.Content); i += 2 {
				if why, secret := looksLikeSecret(vars.Content[i+1].Value); secret {
					errs = append(errs, fileErr(path, vars.Content[i+1].Line, "line %s: vars.%s "+secretValueError, id, vars.Content[i].Value, why))
				}
			}
		}
		if spec.SecretNextEnv != "" && spec.SecretEnv == "" {
			errs = append(errs, fileErr(path, at("secret_next_env"), "line %s: secret_next_env needs secret_env (the current secret) as well", id))
		}
		if vars := valueOf(v, "vars"); vars != nil {
			errs = append(errs, checkVarNames(path, vars, 0)...)
		}
		l := Line{ID: id, Agent: spec.Agent, SecretEnv: spec.SecretEnv, SecretNextEnv: spec.SecretNextEnv, Vars: spec.Vars}
		if l.Agent == "" {
			l.Agent = DefaultName
		}
		s.lines[id] = l
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}
