// Package cliutil holds the small helpers the command-line tools (verify, preflight) share:
// an injectable environment and PATH lookup for testable commands, and one-line error text.
package cliutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvLookup returns a getenv over env (the last value of a name wins, as in the process
// environment).
func EnvLookup(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(name string) string { return m[name] }
}

// LookPath finds an executable named file in the directories of path (a PATH value).
func LookPath(file, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// OneLine joins s's lines with "; ", dropping blank ones and indentation.
func OneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
