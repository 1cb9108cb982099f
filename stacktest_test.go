package main

import (
	"fmt"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
)

// stackNames returns every stack that has a Pulumi.<stack>.yaml in the repository.
func stackNames(t *testing.T) []string {
	t.Helper()
	stacks, err := pulumitest.StackNames(".")
	require.NoError(t, err)
	return stacks
}

// aksStackNames returns the stacks on AKS (platform aks, the default): the tests of the cluster,
// its monitoring and the Kubernetes side run on these. containerapps_test.go covers the others.
func aksStackNames(t *testing.T) []string { return stacksOn(t, infra.PlatformAKS) }

// containerAppsStackNames returns the stacks on Azure Container Apps.
func containerAppsStackNames(t *testing.T) []string { return stacksOn(t, infra.PlatformContainerApps) }

// stacksOn returns the stacks whose config (as the CLI loads it) targets platform; it fails when
// there is none, so a test cannot pass by checking nothing.
func stacksOn(t *testing.T, platform string) []string {
	t.Helper()
	var out []string
	for _, stack := range stackNames(t) {
		cfg, err := pulumitest.LoadStackConfig(".", stack)
		require.NoError(t, err)
		p := cfg[infra.Project+":platform"]
		if p == "" {
			p = infra.PlatformAKS
		}
		if p == platform {
			out = append(out, stack)
		}
	}
	require.NotEmpty(t, out, "no stack file targets platform %s", platform)
	return out
}

// loadStackConfig loads Pulumi.yaml and Pulumi.<stack>.yaml exactly as the CLI does (see
// pulumitest.LoadStackConfig) and returns the config as the program sees it, with the one key
// every deployment must set and no stack file can (imageSourceRepository), as CI sets it.
func loadStackConfig(t *testing.T, stack string) map[string]string {
	t.Helper()
	cfg, err := pulumitest.LoadStackConfig(".", stack)
	require.NoError(t, err)
	return withConfig(cfg, "imageSourceRepository", pulumitest.ImageSourceRepository)
}

// stackRun is one run of the program under mocks.
type stackRun struct {
	mocks   *pulumitest.Mocks
	outputs map[string]internals.UnsafeAwaitOutputResult
}

// runStack runs the real program for a stack with its config, and resolves the stack outputs.
func runStack(t *testing.T, stack string, cfg map[string]string) *stackRun {
	t.Helper()
	m := pulumitest.New(infra.Project, stack)
	run := &stackRun{mocks: m, outputs: map[string]internals.UnsafeAwaitOutputResult{}}
	err := m.Run(cfg, func(ctx *pulumi.Context) error {
		outs, err := deploy(ctx)
		if err != nil {
			return err
		}
		for k, v := range outs {
			res, err := internals.UnsafeAwaitOutput(ctx.Context(), pulumi.ToOutput(v))
			if err != nil {
				return fmt.Errorf("resolving output %s: %w", k, err)
			}
			run.outputs[k] = res
		}
		return nil
	})
	require.NoError(t, err, "running the program for stack %s", stack)
	return run
}

// runProgram runs main's program function itself (what pulumi.Run calls) and returns its error.
func runProgram(stack string, cfg map[string]string) (*pulumitest.Mocks, error) {
	m := pulumitest.New(infra.Project, stack)
	return m, m.Run(cfg, program)
}

// withConfig returns a copy of base with key (in the project namespace) set to value.
func withConfig(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[infra.Project+":"+kv[i]] = kv[i+1]
	}
	return out
}
