package prompts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// SourcesFile is the file in the prompts directory, beside lines.yaml, that turns on the
// receivers of other platforms' call events and says how each authenticates.
const SourcesFile = "sources.yaml"

// Sources is sources.yaml. A nil platform is not configured: its receiver stays off.
// Secrets never live in the file: it names the environment variables that hold them.
type Sources struct {
	Salpre    *SalpreSource `yaml:"salpre"`
	Itellico  *HMACSource   `yaml:"itellico"`
	SpeakNode *HMACSource   `yaml:"speaknode"`
	// DedupeTTL is how long a processed event is remembered; 0 means the brain's default.
	DedupeTTL time.Duration `yaml:"dedupe_ttl"`
}

// SalpreSource authenticates Salpre by the headers its operator adds to the integration.
type SalpreSource struct {
	Headers []HeaderSource `yaml:"headers"`
	MaxAge  time.Duration  `yaml:"max_age"`
}

// HeaderSource is one accepted header: its name and the variable holding its value.
type HeaderSource struct {
	Name     string `yaml:"name"`
	ValueEnv string `yaml:"value_env"`
}

// HMACSource authenticates an HMAC-signing platform (itellicoAI, SpeakNode). Empty header
// names and encoding take the brain's documented defaults.
type HMACSource struct {
	SecretEnv       string        `yaml:"secret_env"`
	SecretNextEnv   string        `yaml:"secret_next_env"`
	SignatureHeader string        `yaml:"signature_header"`
	TimestampHeader string        `yaml:"timestamp_header"`
	Encoding        string        `yaml:"encoding"`
	MaxSkew         time.Duration `yaml:"max_skew"`
}

// LoadSources reads dir/sources.yaml. A directory without one configures nothing (nil, nil).
// Every problem found is returned, each as a *FileError, joined.
func LoadSources(dir string) (*Sources, error) {
	path := filepath.Join(dir, SourcesFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ParseSources(path, raw)
}

// ParseSources parses and checks the contents of a sources.yaml.
func ParseSources(path string, raw []byte) (*Sources, error) {
	var s Sources
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fileErr(path, 0, "%s (keys: salpre, itellico, speaknode, dedupe_ttl)", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fileErr(path, 0, format, args...)) }
	envName := func(where, name string, required bool) {
		switch {
		case name == "" && required:
			bad("%s is required: the NAME of the environment variable holding it", where)
		case name == "":
		default:
			// Never echo the value: it may be the secret itself, and this error is logged.
			if why, secret := looksLikeSecret(name); secret {
				bad("%s "+secretValueError, where, why)
			} else if !envRe.MatchString(name) {
				bad("%s must be the NAME of an environment variable (letters, digits, _), never the secret itself", where)
			}
		}
	}
	if p := s.Salpre; p != nil {
		if len(p.Headers) == 0 {
			bad("salpre.headers: give at least one {name, value_env}: Salpre signs nothing, so a header is its only check")
		}
		for i, h := range p.Headers {
			if strings.TrimSpace(h.Name) == "" || strings.ContainsAny(h.Name, " :\t") {
				bad("salpre.headers[%d].name must be an HTTP header name", i)
			}
			envName(fmt.Sprintf("salpre.headers[%d].value_env", i), h.ValueEnv, true)
		}
		if p.MaxAge < 0 {
			bad("salpre.max_age must not be negative")
		}
	}
	for _, h := range []struct {
		name string
		src  *HMACSource
	}{{"itellico", s.Itellico}, {"speaknode", s.SpeakNode}} {
		if h.src == nil {
			continue
		}
		envName(h.name+".secret_env", h.src.SecretEnv, true)
		envName(h.name+".secret_next_env", h.src.SecretNextEnv, false)
		switch h.src.Encoding {
		case "", "hex", "base64":
		default:
			bad("%s.encoding %q: want hex or base64", h.name, h.src.Encoding)
		}
		if h.src.MaxSkew < 0 {
			bad("%s.max_skew must not be negative", h.name)
		}
		if h.name == "speaknode" && h.src.TimestampHeader != "" {
			bad("speaknode.timestamp_header: SpeakNode signs the body only, with no timestamp")
		}
	}
	if s.DedupeTTL < 0 {
		bad("dedupe_ttl must not be negative")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &s, nil
}
