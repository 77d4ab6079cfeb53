// Package deploy checks the deployment files (Dockerfile, .dockerignore, deploy/compose.yaml,
// HAProxy and Prometheus configuration, deploy/k8s) for the properties the brain relies on.
// No container engine or cluster runs here, so these are structural checks of the parsed
// files; deploy/validate (run by .ci/test) also decodes the manifests into the Kubernetes API
// types and parses the Dockerfile with BuildKit's parser (docs/deploy.md).
// It imports none of our packages.
package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return dir
}

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	require.NoError(t, err)
	return b
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct{ cmd, args string }

func parseDockerfile(t *testing.T, src []byte) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") { // a comment inside a continued instruction
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	require.Zero(t, cur.Len(), "Dockerfile ends inside a continued instruction")
	return out
}

// qualified reports whether an image reference names its registry (Podman resolves short
// names only through a configured search registry).
func qualified(image string) bool {
	first, _, ok := strings.Cut(image, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, read(t, "Dockerfile"))
	known := []string{"FROM", "WORKDIR", "COPY", "RUN", "ARG", "ENV", "EXPOSE", "USER", "HEALTHCHECK", "ENTRYPOINT", "CMD", "LABEL"}
	var froms, users, runs []string
	var health, entry string
	for _, in := range ins {
		require.Contains(t, known, in.cmd, "unknown instruction %s", in.cmd)
		switch in.cmd {
		case "FROM":
			froms = append(froms, strings.Fields(in.args)[0])
		case "USER":
			users = append(users, in.args)
		case "RUN":
			runs = append(runs, in.args)
		case "HEALTHCHECK":
			health = in.args
		case "ENTRYPOINT":
			entry = in.args
		}
	}
	require.Len(t, froms, 2, "a build stage and a runtime stage")
	for _, f := range froms {
		assert.True(t, qualified(f), "FROM %s: not fully qualified", f)
	}
	assert.Contains(t, froms[1], "static", "the runtime image is a static one")
	require.NotEmpty(t, users)
	last := users[len(users)-1]
	assert.NotContains(t, []string{"root", "0", "root:root", "0:0"}, last, "runs as root")
	assert.Regexp(t, `^\["/usr/local/bin/brain",\s*"health"\]$|CMD \["/usr/local/bin/brain", "health"\]`, strings.TrimSpace(health[strings.Index(health, "CMD"):]))
	assert.Contains(t, entry, "/usr/local/bin/brain")
	build := strings.Join(runs, "\n")
	assert.Contains(t, build, "--mount=type=cache,target=/go/pkg/mod")
	assert.Contains(t, build, "--mount=type=cache,target=/root/.cache/go-build")
	assert.Contains(t, build, "CGO_ENABLED=0", "a static binary")
	assert.Contains(t, build, "-X main.version=")
	assert.Contains(t, build, "./cmd/brain")
}

// TestDockerignore: the build context leaves out what never reaches the image (history,
// docs, CI, bench output), so editing them does not rebuild Go; prompts stay in.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	lines := strings.Split(string(read(t, ".dockerignore")), "\n")
	for _, want := range []string{".git", "docs", ".ci", "deploy", "**/*.md", "!prompts/**"} {
		assert.Contains(t, lines, want)
	}
	// Every COPY source of the runtime stage that comes from the context is not ignored.
	assert.Less(t, slices.Index(lines, "**/*.md"), slices.Index(lines, "!prompts/**"),
		"the prompts exception must come after the *.md exclusion")
}

type compose struct {
	Services map[string]struct {
		Image       string
		Build       any
		Environment map[string]string
		Deploy      struct{ Replicas int }
		StopGrace   string `yaml:"stop_grace_period"`
		Healthcheck map[string]any
		Volumes     []string
	}
}

func TestCompose(t *testing.T) {
	t.Parallel()
	var c compose
	dec := yaml.NewDecoder(bytes.NewReader(read(t, "deploy/compose.yaml")))
	require.NoError(t, dec.Decode(&c))
	for _, s := range []string{"brain", "redis", "haproxy", "prometheus", "grafana"} {
		require.Contains(t, c.Services, s)
	}
	for name, s := range c.Services {
		assert.True(t, qualified(s.Image), "service %s: image %q not fully qualified", name, s.Image)
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				_, err := os.Stat(filepath.Join(root(t), "deploy", src))
				assert.NoError(t, err, "service %s mounts %s", name, src)
			}
		}
	}
	b := c.Services["brain"]
	assert.NotNil(t, b.Build)
	assert.GreaterOrEqual(t, b.Deploy.Replicas, 2)
	assert.Equal(t, ":9090", b.Environment["BRAIN_METRICS_ADDR"])
	assert.Contains(t, b.Environment["REDIS_URL"], "redis://redis:")
	grace, err := time.ParseDuration(b.StopGrace)
	require.NoError(t, err)
	assert.Greater(t, grace, drain(t, b.Environment["BRAIN_DRAIN_DELAY"], b.Environment["BRAIN_DRAIN_TIMEOUT"]))

	hap := string(read(t, "deploy/haproxy.cfg"))
	assert.Regexp(t, `option httpchk GET /readyz`, hap, "the balancer follows /readyz, which turns 503 on SIGTERM")
	assert.Regexp(t, `server-template brain \d+ brain:8080`, hap)
	assert.Regexp(t, `timeout server 3[0-9]{2}s`, hap, "an answer may stream for 5 minutes")
	prom := string(read(t, "deploy/prometheus.yml"))
	assert.Contains(t, prom, "port: 9090")
}

// TestHAProxyConfig: the balancer's configuration is one HAProxy accepts (haproxy -c; .ci/test
// installs the Debian package).
func TestHAProxyConfig(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("haproxy")
	require.NoError(t, err, "haproxy is not installed: apt-get install haproxy (bash .ci/test does)")
	out, err := exec.Command(bin, "-c", "-f", filepath.Join(root(t), "deploy", "haproxy.cfg")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "valid")
	bad := filepath.Join(t.TempDir(), "bad.cfg")
	require.NoError(t, os.WriteFile(bad, []byte("backend brains\n    balance leastconnn\n"), 0o600))
	out, err = exec.Command(bin, "-c", "-f", bad).CombinedOutput()
	require.Error(t, err, "a broken configuration is refused: %s", out)
}

// drain is how long a brain may take to stop after SIGTERM: the delay plus the drain timeout
// (default 5m).
func drain(t *testing.T, delay, timeout string) time.Duration {
	t.Helper()
	var d time.Duration
	if delay != "" {
		v, err := time.ParseDuration(delay)
		require.NoError(t, err)
		d += v
	}
	if timeout == "" {
		timeout = "5m"
	}
	v, err := time.ParseDuration(timeout)
	require.NoError(t, err)
	return d + v
}

// manifests decodes every document of deploy/k8s/*.yaml (kustomization excluded), by kind.
func manifests(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "deploy", "k8s", "*.yaml"))
	require.NoError(t, err)
	out := map[string]map[string]any{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				break
			}
			kind, _ := doc["kind"].(string)
			require.NotEmpty(t, kind, "%s: a document without a kind", f)
			require.NotEmpty(t, doc["apiVersion"], "%s: %s without an apiVersion", f, kind)
			out[kind] = doc
		}
	}
	return out
}

// at walks a decoded YAML document: keys for maps, "0" for a list's first element.
func at(t *testing.T, v any, path string) any {
	t.Helper()
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			require.NotEmpty(t, x, "at %s", path)
			v = x[0]
		default:
			t.Fatalf("%s: no %s", path, k)
		}
	}
	return v
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	m := manifests(t)
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		require.Contains(t, m, k)
	}
	dep := m["Deployment"]
	pod := at(t, dep, "spec.template.spec").(map[string]any)
	c := at(t, pod, "containers.0").(map[string]any)
	assert.True(t, qualified(c["image"].(string)), "image %v", c["image"])
	assert.Equal(t, "/readyz", at(t, c, "readinessProbe.httpGet.path"))
	assert.Equal(t, "/healthz", at(t, c, "livenessProbe.httpGet.path"))
	assert.NotNil(t, at(t, c, "resources.requests.cpu"))
	assert.NotNil(t, at(t, c, "resources.limits.memory"))
	assert.Equal(t, true, at(t, pod, "securityContext.runAsNonRoot"))
	env := map[string]string{}
	for _, e := range c["env"].([]any) {
		e := e.(map[string]any)
		if v, ok := e["value"].(string); ok {
			env[e["name"].(string)] = v
		}
	}
	assert.Equal(t, ":9090", env["BRAIN_METRICS_ADDR"])
	grace := time.Duration(at(t, pod, "terminationGracePeriodSeconds").(int)) * time.Second
	assert.Greater(t, grace, drain(t, env["BRAIN_DRAIN_DELAY"], env["BRAIN_DRAIN_TIMEOUT"]),
		"the grace period must outlast the drain")

	labels := at(t, dep, "spec.template.metadata.labels").(map[string]any)
	for k, v := range at(t, m["PodDisruptionBudget"], "spec.selector.matchLabels").(map[string]any) {
		assert.Equal(t, v, labels[k], "the PDB selects the brain's pods")
	}
	for k, v := range at(t, m["Service"], "spec.selector").(map[string]any) {
		assert.Equal(t, v, labels[k], "the Service selects the brain's pods")
	}
	hpa := m["HorizontalPodAutoscaler"]
	assert.Equal(t, at(t, dep, "metadata.name"), at(t, hpa, "spec.scaleTargetRef.name"))
	metric := at(t, hpa, "spec.metrics.0.pods.metric.name").(string)
	assert.Equal(t, "callbrain_turns_active", metric)
	assert.Contains(t, string(read(t, "docs/metrics.md")), "`"+metric+"`", "the HPA scales on an exported metric")
}

// TestGrafanaProvisioning: the provisioned dashboard path is where compose mounts the JSON.
func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	prov := string(read(t, "deploy/grafana/provisioning/dashboards/callbrain.yaml"))
	path := regexp.MustCompile(`path: (\S+)`).FindStringSubmatch(prov)
	require.NotNil(t, path)
	assert.Contains(t, string(read(t, "deploy/compose.yaml")), "grafana/callbrain.json:"+path[1]+"/callbrain.json")
}
