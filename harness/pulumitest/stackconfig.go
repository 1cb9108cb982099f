package pulumitest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/esc"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"

	"github.com/aks-edw/aks-edw/internal/suggest"
)

// StackNames returns, sorted, every stack that has a Pulumi.<stack>.yaml in dir.
func StackNames(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "Pulumi.*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("listing stack files in %s: %w", dir, err)
	}
	var stacks []string
	for _, f := range files {
		stacks = append(stacks, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml"))
	}
	if len(stacks) == 0 {
		return nil, fmt.Errorf("no Pulumi.<stack>.yaml files found in %s", dir)
	}
	sort.Strings(stacks)
	return stacks, nil
}

// LoadStackConfig loads dir/Pulumi.yaml and dir/Pulumi.<stack>.yaml exactly as the CLI does: the
// SDK's LoadProject, LoadProjectStack and ValidateStackConfigAndApplyProjectConfig apply the
// declared defaults and type checks. It also fails on a stack key in the project's namespace that
// the project does not declare (a typo in a stack file would otherwise be silently ignored). It
// returns the config as the program sees it ("project:key" -> value).
//
// Offline runs have no secrets provider: a stack file holding secure values, or importing ESC
// environments, is reported as an error rather than passed through as ciphertext.
func LoadStackConfig(dir, stack string) (map[string]string, error) {
	projPath := filepath.Join(dir, "Pulumi.yaml")
	proj, err := workspace.LoadProject(projPath)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", projPath, err)
	}
	if err := proj.Validate(); err != nil {
		return nil, fmt.Errorf("validating %s: %w", projPath, err)
	}
	stackFile := "Pulumi." + stack + ".yaml"
	stackPath := filepath.Join(dir, stackFile)
	if _, err := os.Stat(stackPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			known, _ := StackNames(dir)
			return nil, fmt.Errorf("stack %q: %s does not exist (stacks: %s)", stack, stackPath, strings.Join(known, ", "))
		}
		return nil, fmt.Errorf("stack %q: %w", stack, err)
	}
	sink := diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never})
	ps, err := workspace.LoadProjectStack(sink, proj, stackPath)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", stackFile, err)
	}
	if ps.Environment != nil && ps.Environment.Definition() != nil {
		return nil, fmt.Errorf("%s uses ESC environments, which cannot be resolved offline", stackFile)
	}
	if ps.Config.HasSecureValue() {
		return nil, secureError(stackFile, ps.Config)
	}

	var undeclared []string
	declared := make([]string, 0, len(proj.Config))
	for k := range proj.Config {
		declared = append(declared, k)
	}
	for key := range ps.Config {
		if key.Namespace() != proj.Name.String() {
			continue
		}
		if _, ok := proj.Config[key.Name()]; !ok {
			u := key.String()
			if s, ok := suggest.Closest(key.Name(), declared); ok {
				u += fmt.Sprintf(" (did you mean %q?)", s)
			}
			undeclared = append(undeclared, u)
		}
	}
	if len(undeclared) > 0 {
		sort.Strings(undeclared)
		return nil, fmt.Errorf("%s sets %s, which Pulumi.yaml does not declare", stackFile, strings.Join(undeclared, ", "))
	}

	err = workspace.ValidateStackConfigAndApplyProjectConfig(context.Background(), stack, proj, esc.Value{},
		ps.Config, config.NopEncrypter, config.NopDecrypter)
	if err != nil {
		return nil, fmt.Errorf("%s does not match Pulumi.yaml: %w", stackFile, err)
	}
	if ps.Config.HasSecureValue() {
		return nil, secureError(stackFile, ps.Config)
	}

	plain, err := ps.Config.Decrypt(config.NopDecrypter)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", stackFile, err)
	}
	out := map[string]string{}
	for k, v := range plain {
		out[k.String()] = v
	}
	return out, nil
}

// secureError names the secure keys: NopDecrypter would hand their ciphertext to the program.
func secureError(stackFile string, m config.Map) error {
	var keys []string
	for _, k := range m.SecureKeys() {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return fmt.Errorf("%s holds secret (secure:) values for %s; they need the stack's secrets provider, "+
		"which mock runs do not have: keep secrets out of the stack files used offline", stackFile, strings.Join(keys, ", "))
}
