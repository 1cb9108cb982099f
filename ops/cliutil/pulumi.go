package cliutil

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/aks-edw/aks-edw/app/redact"
)

// PulumiTimeout bounds `pulumi stack output`.
const PulumiTimeout = 2 * time.Minute

// StackOutputs runs `pulumi stack output --json --show-secrets --stack <stack>` in the project
// folder cwd, with env (pulumi is looked up on its PATH), and returns its stdout. Errors name the
// stack and say what to do; pulumi's own words are redacted.
func StackOutputs(ctx context.Context, stack, cwd string, env []string) ([]byte, error) {
	pulumi, err := LookPath("pulumi", EnvLookup(env)("PATH"))
	if err != nil {
		return nil, fmt.Errorf("the pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/iac/download-install/) and log in to the backend that holds stack %s", stack)
	}
	ctx, cancel := context.WithTimeout(ctx, PulumiTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack)
	cmd.Dir = cwd
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		said := strings.TrimSpace(redact.String(stderr.String()))
		if strings.Contains(said, "no stack named") {
			return nil, fmt.Errorf("unknown stack %q in %s: pulumi says %q (pulumi stack ls --cwd %s lists the stacks)", stack, cwd, said, cwd)
		}
		return nil, fmt.Errorf("pulumi stack output --stack %s in %s failed (%v): %s", stack, cwd, err, said)
	}
	return stdout.Bytes(), nil
}

// Condense keeps the first n non-empty lines of s (dropping "---" rules).
func Condense(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, " \t"); strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "---") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}
