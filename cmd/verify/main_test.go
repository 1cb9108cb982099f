package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/ops/verify"
)

// fakePulumi writes a `pulumi` script into a fresh directory and returns the directory (for
// PATH). The script records its arguments and working directory next to itself, then prints
// stdout and stderr and exits with code. Only shell builtins are used: PATH holds nothing else.
func fakePulumi(t *testing.T, stdout, stderr string, code int) string {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
echo "$@" > %[1]s/args
pwd > %[1]s/cwd
printf '%%s' %[2]s
printf '%%s\n' %[3]s >&2
exit %[4]d
`, shellQuote(dir), shellQuote(stdout), shellQuote(stderr), code)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pulumi"), []byte(script), 0o755))
	return dir
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// calledWith returns the fake pulumi's arguments and working directory ("" if not called).
func calledWith(t *testing.T, dir string) (args, cwd string) {
	t.Helper()
	a, _ := os.ReadFile(filepath.Join(dir, "args"))
	c, _ := os.ReadFile(filepath.Join(dir, "cwd"))
	return strings.TrimSpace(string(a)), strings.TrimSpace(string(c))
}

// kubeconfig points at server with a token that must never be printed.
func kubeconfig(server string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: aks
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: s3cr3t-cluster-token
contexts:
- name: aks
  context: {cluster: aks, user: admin}
current-context: aks
`, server)
}

// outputsJSON is `pulumi stack output --json` of a deployed stack, with changes applied
// (a nil value removes the key).
func outputsJSON(t *testing.T, server string, change map[string]any) string {
	t.Helper()
	out := map[string]any{
		"storageAccountName": "stedwdev", "queueName": "orders", "tableName": "records",
		"resourceGroupName": "rg-edw-dev", "kubeconfig": kubeconfig(server),
		"consumerWorkload": map[string]string{
			"namespace": "edw", "scaleMode": "ScaledObject", "deploymentName": "aqs-consumer", "scaledObjectName": "aqs-consumer",
			"scaledJobName": "", "nodePoolName": "app", "appLabel": "aqs-consumer",
		},
	}
	for k, v := range change {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	b, err := json.Marshal(out)
	require.NoError(t, err)
	return string(b)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// runCLI runs the program in-process with env and returns the exit code and outputs.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, env, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// assertOneError checks exit code 2 and a single error line on stderr, starting "verify: ".
func assertOneError(t *testing.T, code int, stdout, stderr string, want ...string) {
	t.Helper()
	assert.Equal(t, exitBadInput, code, "stderr: %s", stderr)
	assert.Empty(t, stdout)
	assert.True(t, strings.HasPrefix(stderr, "verify: "), stderr)
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one error line: %q", stderr)
	for _, w := range want {
		assert.Contains(t, stderr, w)
	}
	assert.NotContains(t, stderr, "s3cr3t", "the kubeconfig's credentials are never printed")
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-stack", "dev", "-bogus"}, "verify: bad flags: flag provided but not defined: -bogus (verify -h lists them)"},
		{"not a number", []string{"-stack", "dev", "-count", "many"}, `bad flags: invalid value "many" for flag -count`},
		{"no stack", []string{}, "bad flags: -stack is required (e.g. -stack dev)"},
		{"count 0", []string{"-stack", "dev", "-count", "0"}, "bad flags: -count=0: must be between 1 and 10000"},
		{"count too big", []string{"-stack", "dev", "-count", "10001"}, "-count=10001: must be between 1 and 10000"},
		{"negative slack", []string{"-stack", "dev", "-slack", "-1s"}, "-slack=-1s: must be >= 0"},
		{"zero timeout", []string{"-stack", "dev", "-timeout", "0s"}, "-timeout=0s: must be > 0"},
		{"positional argument", []string{"-stack", "dev", "extra"}, `unexpected arguments ["extra"]`},
		{"cwd missing", []string{"-stack", "dev", "-cwd", "/nonexistent/project"}, "-cwd /nonexistent/project: not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := fakePulumi(t, outputsJSON(t, "https://127.0.0.1:1", nil), "", 0)
			code, stdout, stderr := runCLI(t, []string{"PATH=" + bin}, tc.args...)
			assertOneError(t, code, stdout, stderr, tc.want)
			args, _ := calledWith(t, bin)
			assert.Empty(t, args, "pulumi is not run when the flags are bad")
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCLI(t, nil, "-h")
	assert.Equal(t, exitOK, code)
	for _, w := range []string{"usage: verify -stack NAME", "-skip-scale-down", "-json", "-cwd", "-slack", "-timeout", "-count", "Exit status"} {
		assert.Contains(t, stderr, w)
	}
}

func TestUnknownStack(t *testing.T) {
	t.Parallel()
	bin := fakePulumi(t, "", "error: no stack named 'nope' found", 255)
	project := t.TempDir()
	code, stdout, stderr := runCLI(t, []string{"PATH=" + bin, "PULUMI_BACKEND_URL=file://" + project}, "-stack", "nope", "-cwd", project)
	assertOneError(t, code, stdout, stderr,
		fmt.Sprintf(`verify: unknown stack "nope" in %s: pulumi says "error: no stack named 'nope' found"`, project))
	args, cwd := calledWith(t, bin)
	assert.Equal(t, "stack output --json --show-secrets --stack nope", args)
	assert.Equal(t, project, cwd, "pulumi runs in -cwd")
}

func TestPulumiNotInstalled(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, []string{"PATH=" + t.TempDir()}, "-stack", "dev")
	assertOneError(t, code, stdout, stderr, "the pulumi CLI is not on PATH")
}

func TestPulumiFails(t *testing.T) {
	t.Parallel()
	bin := fakePulumi(t, "", "error: failed to load checkpoint: blob (key \".pulumi/stacks/dev.json\") (code=Unknown)", 255)
	code, stdout, stderr := runCLI(t, []string{"PATH=" + bin}, "-stack", "dev")
	assertOneError(t, code, stdout, stderr, "pulumi stack output --stack dev in . failed (exit status 255): error: failed to load checkpoint")
}

func TestMissingOutputs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change map[string]any
		want   string
	}{
		{"stack from before verify", map[string]any{"consumerWorkload": nil, "tableName": nil, "kubeconfig": nil},
			"verify: stack dev lacks outputs verify needs: consumerWorkload, kubeconfig, tableName (deploy this version of the program: pulumi up --stack dev)"},
		{"empty values", map[string]any{"queueName": ""},
			"stack dev lacks outputs verify needs: queueName"},
		{"workload fields", map[string]any{"consumerWorkload": map[string]string{"namespace": "edw", "scaleMode": "ScaledObject", "scaledObjectName": "so"}},
			"stack dev lacks outputs verify needs: consumerWorkload.appLabel, consumerWorkload.deploymentName, consumerWorkload.nodePoolName"},
		{"ScaledJob without its name", map[string]any{"consumerWorkload": map[string]string{"namespace": "edw", "scaleMode": "ScaledJob", "nodePoolName": "app", "appLabel": "a"}},
			"lacks outputs verify needs: consumerWorkload.scaledJobName"},
		{"unknown scale mode", map[string]any{"consumerWorkload": map[string]string{"namespace": "edw", "scaleMode": "HPA", "nodePoolName": "app", "appLabel": "a"}},
			`stack output consumerWorkload.scaleMode is "HPA": must be ScaledObject or ScaledJob`},
		{"kubeconfig not a string", map[string]any{"kubeconfig": map[string]string{"s3cr3t": "x"}},
			"output kubeconfig is not a string"},
		{"AKS with an empty kubeconfig", map[string]any{"kubeconfig": ""},
			"stack dev lacks outputs verify needs: kubeconfig ("},
		{"Container Apps without its app", map[string]any{"kubeconfig": "", "consumerWorkload": map[string]string{
			"platform": "containerapps", "scaleMode": "ScaledObject", "resourceGroupName": "rg-edw-dev", "appName": "ca-edw"}},
			"stack dev lacks outputs verify needs: consumerWorkload.appId (deploy"},
		{"a platform verify does not know", map[string]any{"consumerWorkload": map[string]string{
			"platform": "aci", "namespace": "edw", "scaleMode": "ScaledObject", "deploymentName": "d", "scaledObjectName": "so", "nodePoolName": "app", "appLabel": "a"}},
			`consumerWorkload.platform is "aci"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := fakePulumi(t, outputsJSON(t, "https://127.0.0.1:1", tc.change), "", 0)
			code, stdout, stderr := runCLI(t, []string{"PATH=" + bin}, "-stack", "dev")
			assertOneError(t, code, stdout, stderr, tc.want)
		})
	}
}

func TestClusterUnreachable(t *testing.T) {
	t.Parallel()
	server := "https://" + closedPort(t)
	bin := fakePulumi(t, outputsJSON(t, server, nil), "", 0)
	// A connection string (Azurite's well-known account) stands in for credentials: no storage
	// request is made before the cluster is found unreachable.
	env := []string{"PATH=" + bin, "AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true"}
	code, stdout, stderr := runCLI(t, env, "-stack", "dev")
	assertOneError(t, code, stdout, stderr,
		fmt.Sprintf("verify: cluster unreachable: the API server %s (from the stack's kubeconfig) does not answer", server), "connection refused")
}

func TestKubeconfigUnusable(t *testing.T) {
	t.Parallel()
	bin := fakePulumi(t, outputsJSON(t, "", map[string]any{"kubeconfig": "s3cr3t: [not a kubeconfig"}), "", 0)
	env := []string{"PATH=" + bin, "AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true"}
	code, stdout, stderr := runCLI(t, env, "-stack", "dev")
	assertOneError(t, code, stdout, stderr, "stack output kubeconfig does not parse as a kubeconfig")
}

// TestNoCredentials runs the built binary: DefaultAzureCredential reads the process's own
// environment, which only a child process can have clean. AZURE_TOKEN_CREDENTIALS=dev keeps the
// chain to the developer tools (Azure CLI, azd, PowerShell), none of which is on PATH, so the
// test cannot find a managed identity on a machine that happens to have one.
func TestNoCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "verify")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	fake := fakePulumi(t, outputsJSON(t, "https://"+closedPort(t), nil), "", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-stack", "dev")
	cmd.Env = []string{"PATH=" + fake, "HOME=" + dir, "AZURE_TOKEN_CREDENTIALS=dev"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stderr: %s", stderr.String())
	assert.Equal(t, exitBadInput, exit.ExitCode())
	assert.Empty(t, stdout.String())
	s := stderr.String()
	assert.True(t, strings.HasPrefix(s, "verify: no Azure credentials: none that can get a token for Azure Storage: sign in with `az login`"), s)
	assert.Contains(t, s, "AZURE_CLIENT_ID")
	assert.Contains(t, s, "AZURE_STORAGE_CONNECTION_STRING is only for Azurite and local runs")
	assert.Equal(t, 1, strings.Count(s, "verify: "), "one error")
	assert.NotContains(t, s, "cluster", "credentials are checked before the cluster")
}

func TestFinish(t *testing.T) {
	t.Parallel()
	pass := verify.Report{Stack: "dev", ScaleMode: "ScaledObject", Burst: 100, ReplicasTimeline: []verify.ReplicaPoint{}, Checks: []verify.Check{
		{Name: verify.CheckAtMinimumBefore, OK: true, Evidence: "at rest"},
		{Name: verify.CheckBackToMinimum, Skipped: true, Evidence: "-skip-scale-down"},
	}}
	var out bytes.Buffer
	assert.Equal(t, exitOK, finish(pass, false, &out))
	assert.Equal(t, "verify: ok: 1 checks hold on stack dev (ScaledObject, burst of 100), 1 skipped\n", out.String())

	failed := pass
	failed.Checks = append(append([]verify.Check(nil), pass.Checks...),
		verify.Check{Name: verify.CheckStoredOnce, Evidence: "1 of 100 messages have no entity"},
		verify.Check{Name: verify.CheckDrained, Evidence: "still 3"})
	out.Reset()
	assert.Equal(t, exitFailed, finish(failed, true, &out))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, "verify: FAILED: stored-once: 1 of 100 messages have no entity", lines[0], "the last text line names the first failed check")
	var rep verify.Report
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &rep), "the very last line is the JSON report")
	assert.Equal(t, failed, rep)
}
