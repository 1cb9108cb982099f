package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const (
	projectName = "aks-edw-e2e"
	stackName   = "e2e"
)

// newStack is the inline-program stack on a file backend in the work folder, driven through the
// CLI built by tools.sh. The environment makes the engine download nothing: it takes the
// Kubernetes provider from PATH, never checks for updates, and never fetches plugins.
func newStack(ctx context.Context, toolsDir, work string, program pulumi.RunFunc) (auto.Stack, string, error) {
	state := filepath.Join(work, "state")
	home := filepath.Join(work, "pulumi-home")
	for _, d := range []string{state, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return auto.Stack{}, "", err
		}
	}
	cli, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: toolsDir, SkipVersionCheck: true})
	if err != nil {
		return auto.Stack{}, "", fmt.Errorf("the Pulumi CLI in %s/bin (run `make e2e-tools`): %w", toolsDir, err)
	}
	env := pulumiEnv(toolsDir, work)
	stack, err := auto.UpsertStackInlineSource(ctx, stackName, projectName, program,
		auto.Pulumi(cli),
		auto.WorkDir(work),
		auto.PulumiHome(home),
		auto.EnvVars(env),
		auto.Project(workspace.Project{
			Name:    tokens.PackageName(projectName),
			Runtime: workspace.NewProjectRuntimeInfo("go", nil),
			Backend: &workspace.ProjectBackend{URL: "file://" + state},
		}),
	)
	return stack, "Pulumi CLI v" + cli.Version().String(), err
}

// pulumiEnv is the environment of every Pulumi CLI run on the stack: the engine's own and
// verify's `pulumi stack output`.
func pulumiEnv(toolsDir, work string) map[string]string {
	return map[string]string{
		"PATH":                     filepath.Join(toolsDir, "bin") + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME":                     os.Getenv("HOME"),
		"PULUMI_HOME":              filepath.Join(work, "pulumi-home"),
		"PULUMI_BACKEND_URL":       "file://" + filepath.Join(work, "state"),
		"PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
		"PULUMI_SKIP_UPDATE_CHECK": "true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
		"PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK":    "true",
		// The provider must use only the kubeconfig the program gives it.
		"KUBECONFIG": filepath.Join(work, "no-ambient-kubeconfig"),
	}
}

// outcome is what the engine reported for one operation, from its event stream.
type outcome struct {
	// ops maps each step op (create, update, replace, delete, same, ...) to the resource types
	// and names it applied to ("kubernetes:apps/v1:Deployment::consumer-deployment").
	ops map[string][]string
	// errors are the error diagnostics, with the resource they concern.
	errors []string
}

func (o outcome) count(op string) int { return len(o.ops[op]) }

// changed counts every op except "same" (and the stack itself, which is always "same").
func (o outcome) changed() int {
	n := 0
	for op, rs := range o.ops {
		if op != "same" && op != "read" {
			n += len(rs)
		}
	}
	return n
}

// counts is a one-line summary: "create 12, same 2".
func (o outcome) counts() string {
	var ks []string
	for k := range o.ops {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %d", k, len(o.ops[k])))
	}
	if len(parts) == 0 {
		return "no steps"
	}
	return strings.Join(parts, ", ")
}

// has reports whether op applied to a resource whose "type::name" ends with suffix.
func (o outcome) has(op, suffix string) bool {
	for _, r := range o.ops[op] {
		if strings.HasSuffix(r, suffix) {
			return true
		}
	}
	return false
}

// collect drains the engine's events into an outcome.
func collect(ch <-chan events.EngineEvent, o *outcome, done chan<- struct{}) {
	defer close(done)
	for e := range ch {
		if e.ResourcePreEvent != nil {
			m := e.ResourcePreEvent.Metadata
			if m.Type == "pulumi:pulumi:Stack" {
				continue
			}
			o.ops[string(m.Op)] = append(o.ops[string(m.Op)], m.Type+"::"+urnName(m.URN))
		}
		if d := e.DiagnosticEvent; d != nil && d.Severity == "error" {
			o.errors = append(o.errors, strings.TrimSpace(urnName(d.URN)+": "+d.Message))
		}
	}
}

func urnName(urn string) string {
	if i := strings.LastIndex(urn, "::"); i >= 0 {
		return urn[i+2:]
	}
	return urn
}

// engine runs preview, up and destroy on one stack, logging the engine's progress to log.
type engine struct {
	stack auto.Stack
	log   io.Writer
}

func (e engine) preview(ctx context.Context) (outcome, error) {
	o := outcome{ops: map[string][]string{}}
	ch, done := make(chan events.EngineEvent), make(chan struct{})
	go collect(ch, &o, done)
	fmt.Fprintln(e.log, "==== pulumi preview")
	_, err := e.stack.Preview(ctx, optpreview.EventStreams(ch), optpreview.ProgressStreams(e.log),
		optpreview.ErrorProgressStreams(e.log), optpreview.Diff())
	<-done
	return o, err
}

func (e engine) up(ctx context.Context) (outcome, error) {
	o := outcome{ops: map[string][]string{}}
	ch, done := make(chan events.EngineEvent), make(chan struct{})
	go collect(ch, &o, done)
	fmt.Fprintln(e.log, "==== pulumi up")
	_, err := e.stack.Up(ctx, optup.EventStreams(ch), optup.ProgressStreams(e.log),
		optup.ErrorProgressStreams(e.log), optup.Diff())
	<-done
	return o, err
}

func (e engine) destroy(ctx context.Context) (outcome, error) {
	o := outcome{ops: map[string][]string{}}
	ch, done := make(chan events.EngineEvent), make(chan struct{})
	go collect(ch, &o, done)
	fmt.Fprintln(e.log, "==== pulumi destroy")
	_, err := e.stack.Destroy(ctx, optdestroy.EventStreams(ch), optdestroy.ProgressStreams(e.log),
		optdestroy.ErrorProgressStreams(e.log))
	<-done
	return o, err
}

// resourcesInState counts the resources the stack's state holds (the stack itself excluded).
func (e engine) resourcesInState(ctx context.Context) (int, error) {
	dep, err := e.stack.Export(ctx)
	if err != nil {
		return 0, err
	}
	var state struct {
		Resources []struct {
			Type string `json:"type"`
		} `json:"resources"`
	}
	if err := jsonUnmarshal(dep.Deployment, &state); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range state.Resources {
		if r.Type != "pulumi:pulumi:Stack" {
			n++
		}
	}
	return n, nil
}
