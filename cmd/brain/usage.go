package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"
)

// Set at link time by release builds (the Dockerfile):
// -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234". Otherwise the Go toolchain's
// build info is used: the module version and the VCS revision it stamps into binaries built
// from a checkout.
var (
	version = ""
	commit  = ""
)

// usage prints what `brain -h` shows: the subcommands and every setting with its default.
func usage(w io.Writer) {
	fmt.Fprint(w, `brain: the callbrain webhook server for Saperly phone lines.

Usage:
  brain                       serve (configured from the environment, see below)
  brain prompts check [-q] [dir]
                              check agent files and lines.yaml, print what each renders to
  brain calls show [PLATFORM:]ID | calls list [-since D] [-platform P]
                              print call records (every platform's; docs/receivers.md)
  brain jobs dead | jobs retry ID
                              list the dead-lettered background jobs, re-drive one (docs/jobs.md)
  brain worker                run the background jobs only (BRAIN_JOBS=worker on the brains)
  brain version               print the version and commit
  brain health [path]         GET path (default /healthz) on BRAIN_ADDR; exit 0 on 200 (container health checks)
  brain -h | --help | help    this text

Settings (environment variables; see README.md):
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "unset"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.name, def, s.doc)
	}
	_ = tw.Flush()
	fmt.Fprint(w, "\nSecret-bearing variables named in lines.yaml (secret_env) and agent files (tool headers) are read too.\n")
}

// healthCommand probes the server on BRAIN_ADDR over loopback, for a container's HEALTHCHECK.
func healthCommand(args []string, getenv func(string) string, stderr io.Writer) int {
	path := "/healthz"
	if len(args) > 0 {
		path = args[0]
	}
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintf(stderr, "brain health: path %q must start with /\n", path)
		return 2
	}
	_, port, err := net.SplitHostPort(or(getenv("BRAIN_ADDR"), "127.0.0.1:8080"))
	if err != nil {
		fmt.Fprintln(stderr, "brain health: BRAIN_ADDR: want host:port")
		return 2
	}
	host := "127.0.0.1"
	if h, _, _ := net.SplitHostPort(getenv("BRAIN_ADDR")); h != "" && h != "0.0.0.0" && h != "::" {
		host = h
	}
	c := http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + net.JoinHostPort(host, port) + path)
	if err != nil {
		fmt.Fprintln(stderr, "brain health:", err)
		return 1
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "brain health: GET %s: %d\n", path, res.StatusCode)
		return 1
	}
	return 0
}

// versionString is the build's version and commit, from the linker flags or the build info.
func versionString() string {
	v, c, dirty := version, commit, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true" && commit == ""
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	if dirty {
		c += "-dirty"
	}
	return fmt.Sprintf("brain %s commit %s", v, strings.TrimSpace(c))
}
