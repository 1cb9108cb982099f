// Package plan is the offline plan: it runs the stack's program (stack.Deploy) under the test
// mocks (harness/pulumitest) with a stack's config loaded as the Pulumi CLI loads it, and
// renders what `pulumi up` would create for that stack: the key settings, the resource tree and
// the Kubernetes manifests as YAML. It needs no Azure credentials and no Pulumi CLI, so a
// reviewer of a pull request from a fork (where CI has no cloud credentials) still sees the plan.
package plan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
	program "github.com/aks-edw/aks-edw/stack"
)

// Plan is one offline run of the program for a stack, ready to render.
type Plan struct {
	// Project and Stack name the run.
	Project, Stack string
	// Config is the stack's config as the program saw it ("project:key" -> value).
	Config map[string]string
	// Mocks holds every resource the program registered.
	Mocks *pulumitest.Mocks
	// Warnings are the warnings and errors the program logged (ctx.Log), sorted.
	Warnings []string
	// Settings are the key settings a reviewer checks first, read from the resource inputs.
	Settings []Setting
	// Root is the stack; its descendants are every registered resource, by parent.
	Root *Node
	// Manifests are the Kubernetes objects, in apply order.
	Manifests []Manifest
}

// Run loads dir/Pulumi.yaml and dir/Pulumi.<stack>.yaml, runs stack.Deploy under the mocks and
// returns the plan. A config the program rejects is an error, as `pulumi preview` would fail.
func Run(dir, stack string) (*Plan, error) { return RunWithConfig(dir, stack, nil) }

// RunWithConfig is Run with config values set on top of the stack file's, as `pulumi preview
// --config key=value` would (e.g. imageSourceRef = the commit under review). Keys are in the
// project namespace without the prefix ("imageSourceRef"); each must be declared in Pulumi.yaml.
func RunWithConfig(dir, stack string, overrides map[string]string) (*Plan, error) {
	cfg, err := pulumitest.LoadStackConfig(dir, stack)
	if err != nil {
		return nil, err
	}
	if len(overrides) > 0 {
		proj, err := workspace.LoadProject(filepath.Join(dir, "Pulumi.yaml"))
		if err != nil {
			return nil, fmt.Errorf("loading Pulumi.yaml: %w", err)
		}
		var undeclared []string
		for k, v := range overrides {
			if _, ok := proj.Config[k]; !ok {
				undeclared = append(undeclared, infra.Project+":"+k)
				continue
			}
			cfg[infra.Project+":"+k] = v
		}
		if len(undeclared) > 0 {
			sort.Strings(undeclared)
			return nil, fmt.Errorf("-config: %w", errors.Join(infra.UndeclaredKeys(undeclared)...))
		}
	}
	m := pulumitest.New(infra.Project, stack)
	rec := &logRecorder{}
	err = m.Run(cfg, func(ctx *pulumi.Context) error {
		rec.inner = ctx.Log
		ctx.Log = rec
		_, err := program.Deploy(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("running the program for stack %s under mocks: %w", stack, err)
	}
	return build(infra.Project, stack, cfg, m, rec.messages())
}

// build assembles a plan from a finished mock run.
func build(project, stack string, cfg map[string]string, m *pulumitest.Mocks, warnings []string) (*Plan, error) {
	p := &Plan{Project: project, Stack: stack, Config: cfg, Mocks: m, Warnings: warnings}
	p.Root = buildTree(project, stack, m)
	var err error
	if p.Manifests, err = manifests(m); err != nil {
		return nil, err
	}
	p.Settings = keySettings(m, cfg, project)
	return p, nil
}

// Render writes the plan as text: header, warnings, key settings, resource tree, manifests.
func (p *Plan) Render(w io.Writer) error {
	var b bytes.Buffer
	p.header(&b)
	if len(p.Warnings) > 0 {
		b.WriteString("\nWarnings from the program\n")
		for _, msg := range p.Warnings {
			wrap(&b, "  ", "    ", strings.Fields(msg), " ")
		}
	}
	b.WriteString("\nKey settings (as sent in the resource inputs)\n")
	renderSettings(&b, p.Settings)
	fmt.Fprintf(&b, "\nResources (%d, plus the stack)\n", p.Root.count()-1)
	renderTree(&b, p.Root)
	fmt.Fprintf(&b, "\nKubernetes manifests (%d, in apply order)\n", len(p.Manifests))
	if err := renderManifests(&b, p.Manifests); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// String is Render into a string (errors rendered inline).
func (p *Plan) String() string {
	var b strings.Builder
	if err := p.Render(&b); err != nil {
		return b.String() + "\nerror: " + err.Error() + "\n"
	}
	return b.String()
}

// Markdown writes the plan as a Markdown page (docs/plan.<stack>.md): a title, one paragraph on
// how it is generated and checked, and the rendered plan in a fenced block.
func (p *Plan) Markdown(w io.Writer) error {
	var body bytes.Buffer
	if err := p.Render(&body); err != nil {
		return err
	}
	fmt.Fprintf(w, "# Offline plan: the %s stack\n\n", p.Stack)
	fmt.Fprintf(w, "This is what `pulumi up` would create for a new `%s` stack, produced without Azure credentials or "+
		"the Pulumi CLI by `make plan STACK=%s` (`go run ./cmd/plan -stack %s -config imageSourceRepository=<url>`): "+
		"the program runs under the same mocks as the tests, with the config loaded from `Pulumi.yaml` and "+
		"`Pulumi.%s.yaml` as the CLI loads it, and `imageSourceRepository` (required, no default) set to the "+
		"placeholder `"+pulumitest.ImageSourceRepository+"`. "+
		"It is an example for reviewers, not a diff against a deployed stack. `TestPlan` (plan_test.go) fails "+
		"when this file differs from the program's plan, and checks the tree's resources, inputs and options and "+
		"every field of the manifests against the reviewed inventory `testdata/inventory.%s.golden`; after "+
		"reviewing a change, regenerate both with `%s`.\n\n", p.Stack, p.Stack, p.Stack, p.Stack, p.Stack, RegenerateCommand)
	fmt.Fprintf(w, "```text\n%s```\n", body.String())
	return nil
}

// RegenerateCommand regenerates the golden inventories and the committed plan documents.
const RegenerateCommand = "go test . -run '^(TestStacks|TestContainerAppsStacks|TestPlan)$' -update"

func (p *Plan) header(b *bytes.Buffer) {
	title := fmt.Sprintf("Offline plan: stack %s, project %s", p.Stack, p.Project)
	b.WriteString(title + "\n" + strings.Repeat("=", len(title)) + "\n")
	fmt.Fprintf(b, `Ran offline under mocks (harness/pulumitest), with no Azure credentials and no
Pulumi CLI, from the config in Pulumi.yaml + Pulumi.%s.yaml loaded as the CLI loads it.
This is what `+"`pulumi up`"+` would create for a new stack, not a diff against deployed state.
Values Azure computes at deploy time are mock placeholders: resource ids (subscription
%s), client and principal ids (client-id-of-...,
principal-id-of-..., kubelet-object-id-of-...), the OIDC issuer URL, the registry login
server (<name>.azurecr.io) and the random suffix (%s). Secrets are shown as [secret];
in the tree, ARM ids are shortened to their last two segments (…/type/name).
`, p.Stack, pulumitest.SubscriptionID, pulumitest.RandomResult)
}

// logRecorder keeps the program's warnings and errors for the plan and passes every message on.
type logRecorder struct {
	inner pulumi.Log
	mu    sync.Mutex
	msgs  []string
}

func (l *logRecorder) record(sev, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, sev+": "+msg)
}

func (l *logRecorder) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string(nil), l.msgs...)
	sort.Strings(out)
	return out
}

func (l *logRecorder) Debug(msg string, args *pulumi.LogArgs) error { return l.inner.Debug(msg, args) }
func (l *logRecorder) Info(msg string, args *pulumi.LogArgs) error  { return l.inner.Info(msg, args) }

func (l *logRecorder) Warn(msg string, args *pulumi.LogArgs) error {
	l.record("warning", msg)
	return l.inner.Warn(msg, args)
}

func (l *logRecorder) Error(msg string, args *pulumi.LogArgs) error {
	l.record("error", msg)
	return l.inner.Error(msg, args)
}
