package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The binaries are built once per run, on first use, into a temporary directory that
// TestMain removes; a private redis-server started for want of TEST_REDIS_URL lives as long.
var (
	buildOnce sync.Once
	built     struct {
		root, dir, brain, mockllm string
		err                       error
	}

	redisOnce sync.Once
	shared    struct {
		url string
		srv *redisServer // nil when TEST_REDIS_URL was given
		err error
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopCluster()
	if shared.srv != nil {
		shared.srv.kill()
		_ = os.RemoveAll(shared.srv.dir) // a temporary directory; nothing to report
	}
	if built.dir != "" {
		_ = os.RemoveAll(built.dir) // a temporary directory; nothing to report
	}
	os.Exit(code)
}

// binaries builds cmd/brain with the race detector and cmd/mockllm, once per run.
func binaries(t *testing.T) (brain, mockllm string) {
	t.Helper()
	buildOnce.Do(func() {
		built.root, built.err = moduleRoot()
		if built.err != nil {
			return
		}
		built.dir, built.err = os.MkdirTemp("", "callbrain-e2e-")
		if built.err != nil {
			return
		}
		built.brain = filepath.Join(built.dir, "brain")
		built.mockllm = filepath.Join(built.dir, "mockllm")
		for _, b := range []struct {
			out, pkg string
			race     bool
		}{{built.brain, "./cmd/brain", true}, {built.mockllm, "./cmd/mockllm", false}} {
			args := []string{"build"}
			if b.race {
				args = append(args, "-race")
			}
			args = append(args, "-o", b.out, b.pkg)
			cmd := exec.Command("go", args...)
			cmd.Dir = built.root
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatalf("building the binaries under test: %v", built.err)
	}
	return built.brain, built.mockllm
}

// repoRoot is the module root: the prompts and the call scripts are read from it.
func repoRoot(t *testing.T) string {
	t.Helper()
	binaries(t)
	return built.root
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module (%q)", mod)
	}
	return filepath.Dir(mod), nil
}

// sharedRedisURL is the Redis the suite's brains share: TEST_REDIS_URL, or else a private
// redis-server started once for the whole run. Without either the test fails: the end-to-end
// suite must not pass by skipping its main store.
func sharedRedisURL(t *testing.T) string {
	t.Helper()
	redisOnce.Do(func() {
		if u := os.Getenv("TEST_REDIS_URL"); u != "" {
			shared.url = u
			return
		}
		if _, err := exec.LookPath("redis-server"); err != nil {
			shared.err = fmt.Errorf("TEST_REDIS_URL is not set and redis-server is not on PATH: run the suite with `make test` " +
				"(it starts a private Redis), set TEST_REDIS_URL=redis://host:port/db, or install redis-server")
			return
		}
		dir, err := os.MkdirTemp("", "callbrain-e2e-redis-")
		if err != nil {
			shared.err = err
			return
		}
		port, err := pickPort()
		if err != nil {
			shared.err = err
			return
		}
		// Not tied to a test: it serves every test of the run and TestMain stops it.
		shared.srv, shared.err = launchRedis(dir, port, 10*time.Second)
		shared.url = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	})
	if shared.err != nil {
		t.Fatalf("redis for the end-to-end suite: %v", shared.err)
	}
	return shared.url
}
