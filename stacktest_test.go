package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pulumi/esc"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/infra"
	"github.com/aks-edw/aks-edw/internal/pulumitest"
)

// stackNames returns every stack that has a Pulumi.<stack>.yaml in the repository.
func stackNames(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("Pulumi.*.yaml")
	require.NoError(t, err)
	var stacks []string
	for _, f := range files {
		stacks = append(stacks, strings.TrimSuffix(strings.TrimPrefix(f, "Pulumi."), ".yaml"))
	}
	require.NotEmpty(t, stacks, "no Pulumi.<stack>.yaml files found")
	sort.Strings(stacks)
	return stacks
}

// loadStackConfig loads Pulumi.yaml and Pulumi.<stack>.yaml exactly as the CLI does: the SDK's
// LoadProject, LoadProjectStack and ValidateStackConfigAndApplyProjectConfig apply the declared
// defaults and type checks. It also fails on a stack key the project does not declare (a typo in
// a stack file would otherwise be silently ignored). It returns the config as the program sees it.
func loadStackConfig(t *testing.T, stack string) map[string]string {
	t.Helper()
	proj, err := workspace.LoadProject("Pulumi.yaml")
	require.NoError(t, err, "loading Pulumi.yaml")
	require.NoError(t, proj.Validate(), "validating Pulumi.yaml")
	sink := diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never})
	ps, err := workspace.LoadProjectStack(sink, proj, "Pulumi."+stack+".yaml")
	require.NoError(t, err, "loading Pulumi.%s.yaml", stack)

	for key := range ps.Config {
		if key.Namespace() != infra.Project {
			continue
		}
		_, declared := proj.Config[key.Name()]
		require.True(t, declared, "Pulumi.%s.yaml sets %s, which Pulumi.yaml does not declare", stack, key)
	}

	err = workspace.ValidateStackConfigAndApplyProjectConfig(context.Background(), stack, proj, esc.Value{},
		ps.Config, config.NopEncrypter, config.NopDecrypter)
	require.NoError(t, err, "Pulumi.%s.yaml does not match Pulumi.yaml", stack)

	plain, err := ps.Config.Decrypt(config.NopDecrypter)
	require.NoError(t, err)
	out := map[string]string{}
	for k, v := range plain {
		out[k.String()] = v
	}
	return out
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

// flatten renders a property value as sorted "path=value" lines (secrets shown as [secret]).
func flatten(prefix string, v resource.PropertyValue, out *[]string) {
	switch {
	case v.IsSecret():
		*out = append(*out, prefix+"=[secret]")
	case v.IsObject():
		obj := v.ObjectValue()
		keys := obj.StableKeys()
		if len(keys) == 0 && prefix != "" {
			*out = append(*out, prefix+"={}")
		}
		for _, k := range keys {
			p := string(k)
			if prefix != "" {
				p = prefix + "." + p
			}
			flatten(p, obj[k], out)
		}
	case v.IsArray():
		arr := v.ArrayValue()
		if len(arr) == 0 {
			*out = append(*out, prefix+"=[]")
		}
		for i, e := range arr {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
	case v.IsNull():
		*out = append(*out, prefix+"=null")
	case v.IsComputed() || v.IsOutput():
		*out = append(*out, prefix+"=[unknown]")
	default:
		*out = append(*out, fmt.Sprintf("%s=%v", prefix, v.V))
	}
}
