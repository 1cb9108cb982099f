package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The GitHub Actions workflows under .github/workflows are checked here against the repository
// they drive: every `make` target and `go run ./cmd/...` they call exists, every stack they name
// has a Pulumi.<stack>.yaml, permissions stay least-privilege, actions are pinned to commits, and
// no stored secret is used (Azure and Pulumi Cloud logins go through OIDC). Each check is a pure
// function from the parsed workflows to a list of problems, so TestWorkflowChecksCatchMutations
// can prove that each one fails when a workflow is broken on purpose.

const wfDir = ".github/workflows"

// wfFile is one parsed workflow file.
type wfFile struct {
	Path string // relative to the repository root, e.g. .github/workflows/pr.yml
	Raw  string
	WF   wfWorkflow
}

type wfWorkflow struct {
	Name        string            `yaml:"name"`
	On          yaml.Node         `yaml:"on"`
	Permissions yaml.Node         `yaml:"permissions"`
	Concurrency yaml.Node         `yaml:"concurrency"`
	Jobs        map[string]*wfJob `yaml:"jobs"`
}

type wfJob struct {
	Name           string            `yaml:"name"`
	If             string            `yaml:"if"`
	RunsOn         yaml.Node         `yaml:"runs-on"`
	TimeoutMinutes yaml.Node         `yaml:"timeout-minutes"`
	Environment    yaml.Node         `yaml:"environment"`
	Permissions    yaml.Node         `yaml:"permissions"`
	Concurrency    yaml.Node         `yaml:"concurrency"`
	Uses           string            `yaml:"uses"` // a reusable workflow call
	Env            map[string]string `yaml:"env"`
	Steps          []wfStep          `yaml:"steps"`
}

type wfStep struct {
	Name string            `yaml:"name"`
	ID   string            `yaml:"id"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
}

// wfRepo holds the repository facts the workflows are checked against.
type wfRepo struct {
	Root        string
	Project     string          // the Pulumi project name, the config namespace
	MakeTargets map[string]bool // targets defined in the Makefile
	Stacks      map[string]bool // <stack> of every Pulumi.<stack>.yaml
	ConfigKeys  map[string]bool // keys declared under config: in Pulumi.yaml
}

// wfCheck is one named check over all workflows.
type wfCheck struct {
	name string
	fn   func(files []wfFile, repo wfRepo) []string
}

var wfChecks = []wfCheck{
	{"structure", wfCheckStructure},
	{"permissions", wfCheckPermissions},
	{"pinned actions", wfCheckPins},
	{"make targets and go run paths", wfCheckCommands},
	{"stacks", wfCheckStacks},
	{"config-map", wfCheckConfigMaps},
	{"required pipelines", wfCheckPipelines},
	{"deploy jobs", wfCheckDeployJobs},
	{"checks after a push deploy", wfCheckAfterDeploy},
	{"kubelogin for the Entra-only cluster", wfCheckKubelogin},
	{"no stored secrets", wfCheckSecrets},
}

// TestWorkflowChecks runs every check on the committed workflows.
func TestWorkflowChecks(t *testing.T) {
	repo := wfLoadRepo(t)
	files := wfLoadFiles(t, repo.Root)
	for _, c := range wfChecks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range c.fn(files, repo) {
				t.Error(p)
			}
		})
	}
}

// TestWorkflowMakeCallsSkipRedirections: a redirection is not a make target or argument.
func TestWorkflowMakeCallsSkipRedirections(t *testing.T) {
	for _, script := range []string{
		"make verify STACK=dev 2>&1 | tee verify.log",
		"make verify STACK=dev > verify.log",
		"make verify 2>/dev/null STACK=dev",
	} {
		calls := wfMakeCalls(script)
		if len(calls) != 1 || !reflect.DeepEqual(calls[0].Targets, []string{"verify"}) ||
			!reflect.DeepEqual(calls[0].Vars, map[string]string{"STACK": "dev"}) {
			t.Errorf("%q: got %+v, want one call of target verify with STACK=dev", script, calls)
		}
	}
	if got := wfGoRunPaths("go run ./cmd/verify -stack dev 2>&1 | tee v.log"); !reflect.DeepEqual(got, []string{"./cmd/verify"}) {
		t.Errorf("go run paths: got %v", got)
	}
}

// TestWorkflowChecksCatchMutations breaks the committed workflows one way at a time, in memory,
// and requires a check to report each break with a message naming it.
func TestWorkflowChecksCatchMutations(t *testing.T) {
	repo := wfLoadRepo(t)
	files := wfLoadFiles(t, repo.Root)
	baseline := wfAllProblems(files, repo)

	pinnedCheckout := "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0"
	cases := []struct {
		name, file, old, new, want string
	}{
		{"unpinned action", "pr.yml", pinnedCheckout, "actions/checkout@v4", `"actions/checkout@v4", which is not pinned to a 40-hex commit SHA`},
		{"pin without version comment", "main.yml", pinnedCheckout, "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8", "has no `# vX.Y.Z` comment"},
		{"unknown make target", "pr.yml", "run: make lint", "run: make nosuchtarget", `make target "nosuchtarget" is not defined in the Makefile`},
		{"kubelogin unpinned", "main.yml", "kubelogin@v0.2.19", "kubelogin@latest", "installs no pinned kubelogin"},
		{"kubelogin with the az login method", "pr.yml", "AAD_LOGIN_METHOD: workloadidentity", "AAD_LOGIN_METHOD: azurecli", "does not set AAD_LOGIN_METHOD: workloadidentity"},
		{"kubelogin for another identity", "main.yml", "AZURE_CLIENT_ID: ${{ vars.AZURE_CLIENT_ID }}", "AZURE_CLIENT_ID: ${{ vars.AZURE_PREVIEW_CLIENT_ID }}", "must be the identity azure/login and Pulumi sign in as"},
		{"kubelogin without a tenant", "manual.yml", "      AZURE_TENANT_ID: ${{ vars.AZURE_TENANT_ID }}\n", "", "AZURE_TENANT_ID \"\" must be ARM_TENANT_ID"},
		{"kubelogin other than the e2e's", "main.yml", "kubelogin@v0.2.19", "kubelogin@v0.2.18", "but make e2e proves kubelogin v0.2.19"},
		{"unknown go run path", "pr.yml", "make plan STACK=dev PLAN_IMAGE_REPO", "go run ./cmd/nosuchcmd -stack dev PLAN_IMAGE_REPO", "go run ./cmd/nosuchcmd: no such directory"},
		{"unknown stack in stack-name", "main.yml", "stack-name: ${{ vars.PULUMI_ORG }}/dev", "stack-name: ${{ vars.PULUMI_ORG }}/staging", `stack "staging" has no Pulumi.staging.yaml`},
		{"unknown stack in STACK=", "pr.yml", "make plan STACK=dev PLAN_IMAGE_REPO", "make plan STACK=staging PLAN_IMAGE_REPO", `stack "staging" has no Pulumi.staging.yaml`},
		{"unknown stack in dispatch options", "manual.yml", "options: [dev, dev-aca, prod]", "options: [dev, dev-aca, prod, staging]", `stack "staging" has no Pulumi.staging.yaml`},
		{"stack file not offered", "manual.yml", "options: [dev, dev-aca, prod]", "options: [dev, dev-aca]", "Pulumi.prod.yaml is not offered"},
		{"stored secret", "pr.yml", "${{ secrets.GITHUB_TOKEN }}", "${{ secrets.FOO }}", "secrets.FOO"},
		{"write-all at the top", "main.yml", "permissions:\n  contents: read\n", "permissions: write-all\n", `top-level permissions "write-all"`},
		{"extra top-level scope", "pr.yml", "permissions:\n  contents: read\n", "permissions:\n  contents: read\n  id-token: write\n", "top-level permissions grant id-token: write"},
		{"pull-requests without a PR comment", "main.yml", "      id-token: write # OIDC", "      pull-requests: write\n      id-token: write # OIDC", `job "up" has pull-requests: write`},
		{"id-token without a login", "pr.yml", "    timeout-minutes: 25\n", "    timeout-minutes: 25\n    permissions:\n      contents: read\n      id-token: write\n", `job "lint" has id-token: write`},
		{"login without id-token", "main.yml", "      id-token: write # OIDC tokens for Azure and Pulumi Cloud\n", "", "needs id-token: write"},
		{"no timeout", "pr.yml", "    timeout-minutes: 25\n", "", `job "lint" has no timeout-minutes`},
		{"no fork guard on preview", "pr.yml", "    if: github.event.pull_request.head.repo.full_name == github.repository\n", "", "must skip fork pull requests"},
		{"preview without PR comment", "pr.yml", "comment-on-pr: true", "comment-on-pr: false", "command: preview, stack dev, comment-on-pr: true"},
		{"no make test", "pr.yml", "run: make test", "run: go test ./...", "make test"},
		{"deploy may be cancelled", "main.yml", "cancel-in-progress: false", "cancel-in-progress: true", "cancel-in-progress"},
		{"deploy outside its environment", "main.yml", "    environment: dev\n", "", `environment "dev"`},
		{"dispatch cannot destroy", "manual.yml", "options: [up, destroy]", "options: [up]", "destroy"},
		{"undeclared config key", "main.yml", `"aks-edw:deployerPrincipalType"`, `"aks-edw:noSuchKey"`, `aks-edw:noSuchKey is not declared in Pulumi.yaml`},
		{"image not built from the commit", "main.yml", `value: "${{ github.sha }}"`, `value: "latest"`, "aks-edw:imageSourceRef"},
		{"pull_request_target", "pr.yml", "  pull_request:\n", "  pull_request_target:\n", "pull_request_target"},
		{"no idempotency check after up", "main.yml", "expect-no-changes: true", "expect-no-changes: false", "expect-no-changes: true"},
		{"no verify after up", "main.yml", "make verify STACK=dev", "make lint", "make verify STACK=dev"},
		{"verify of another stack", "main.yml", "make verify STACK=dev", "make verify STACK=prod", "make verify STACK=dev"},
		{"verify's output lost on failure", "main.yml", "if: ${{ !cancelled() }}", "if: success()", "GITHUB_STEP_SUMMARY"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mutated := make([]wfFile, 0, len(files))
			found := false
			for _, f := range files {
				if filepath.Base(f.Path) == tc.file {
					if !strings.Contains(f.Raw, tc.old) {
						t.Fatalf("%s no longer contains %q: update this mutation", f.Path, tc.old)
					}
					found = true
					m, err := wfParse(f.Path, strings.Replace(f.Raw, tc.old, tc.new, 1))
					if err != nil {
						t.Fatalf("mutated %s does not parse: %v", f.Path, err)
					}
					f = m
				}
				mutated = append(mutated, f)
			}
			if !found {
				t.Fatalf("no workflow %s/%s: update this mutation", wfDir, tc.file)
			}
			var added []string
			for _, p := range wfAllProblems(mutated, repo) {
				if !slices.Contains(baseline, p) {
					added = append(added, p)
				}
			}
			for _, p := range added {
				if strings.Contains(p, tc.want) {
					t.Logf("caught: %s", p)
					return
				}
			}
			t.Errorf("mutation not caught: want a new problem containing %q, got %d new: %q", tc.want, len(added), added)
		})
	}
}

func wfAllProblems(files []wfFile, repo wfRepo) []string {
	var all []string
	for _, c := range wfChecks {
		all = append(all, c.fn(files, repo)...)
	}
	return all
}

// ---------------------------------------------------------------------------------------------
// Loading

func wfLoadFiles(t *testing.T, root string) []wfFile {
	t.Helper()
	var paths []string
	for _, pattern := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, wfDir, pattern))
		if err != nil {
			t.Fatalf("listing %s: %v", wfDir, err)
		}
		paths = append(paths, m...)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		t.Fatalf("no workflows in %s", wfDir)
	}
	files := make([]wfFile, 0, len(paths))
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := wfParse(filepath.ToSlash(rel), string(raw))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

func wfParse(path, raw string) (wfFile, error) {
	var wf wfWorkflow
	if err := yaml.Unmarshal([]byte(raw), &wf); err != nil {
		return wfFile{}, fmt.Errorf("%s does not parse as a workflow: %w", path, err)
	}
	return wfFile{Path: path, Raw: raw, WF: wf}, nil
}

var wfMakeTargetRe = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_.%/ -]*?)\s*:([^=]|$)`)

func wfLoadRepo(t *testing.T) wfRepo {
	t.Helper()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repo := wfRepo{Root: root, MakeTargets: map[string]bool{}, Stacks: map[string]bool{}, ConfigKeys: map[string]bool{}}

	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatalf("reading Makefile: %v", err)
	}
	for _, line := range strings.Split(string(mk), "\n") {
		if m := wfMakeTargetRe.FindStringSubmatch(line); m != nil {
			for _, target := range strings.Fields(m[1]) {
				repo.MakeTargets[target] = true
			}
		}
	}

	stackFiles, err := filepath.Glob(filepath.Join(root, "Pulumi.*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range stackFiles {
		repo.Stacks[strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml")] = true
	}
	if len(repo.Stacks) == 0 {
		t.Fatal("no Pulumi.<stack>.yaml in the repository root")
	}

	raw, err := os.ReadFile(filepath.Join(root, "Pulumi.yaml"))
	if err != nil {
		t.Fatalf("reading Pulumi.yaml: %v", err)
	}
	var project struct {
		Name   string               `yaml:"name"`
		Config map[string]yaml.Node `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &project); err != nil {
		t.Fatalf("parsing Pulumi.yaml: %v", err)
	}
	repo.Project = project.Name
	for k := range project.Config {
		repo.ConfigKeys[strings.TrimPrefix(k, project.Name+":")] = true
	}
	return repo
}

// ---------------------------------------------------------------------------------------------
// Small helpers over the parsed workflows

// wfJobNames returns the job ids of a workflow in a stable order.
func wfJobNames(wf wfWorkflow) []string {
	names := make([]string, 0, len(wf.Jobs))
	for n := range wf.Jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// wfStepLabel names a step for failure messages: its name, id, uses or its index.
func wfStepLabel(i int, s wfStep) string {
	switch {
	case s.Name != "":
		return fmt.Sprintf("step %d %q", i+1, s.Name)
	case s.ID != "":
		return fmt.Sprintf("step %d (id %s)", i+1, s.ID)
	case s.Uses != "":
		return fmt.Sprintf("step %d (%s)", i+1, s.Uses)
	default:
		return fmt.Sprintf("step %d", i+1)
	}
}

// wfActionName is the action a `uses:` value refers to, without the ref.
func wfActionName(uses string) string {
	name, _, _ := strings.Cut(uses, "@")
	return name
}

func wfUsesAction(s wfStep, action string) bool {
	return strings.EqualFold(wfActionName(s.Uses), action)
}

func wfJobUses(j *wfJob, action string) bool {
	for _, s := range j.Steps {
		if wfUsesAction(s, action) {
			return true
		}
	}
	return false
}

func wfIsTrue(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "true") }

// wfMapping returns the key/value pairs of a mapping node, nil for any other node.
func wfMapping(n *yaml.Node) map[string]*yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	m := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m
}

// wfTriggers returns the workflow's events, whichever form `on:` takes (string, list or map).
func wfTriggers(wf wfWorkflow) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	switch wf.On.Kind {
	case yaml.ScalarNode:
		out[wf.On.Value] = &yaml.Node{}
	case yaml.SequenceNode:
		for _, n := range wf.On.Content {
			out[n.Value] = &yaml.Node{}
		}
	case yaml.MappingNode:
		for k, v := range wfMapping(&wf.On) {
			out[k] = v
		}
	}
	return out
}

// wfScalars returns the scalar values of a node that is a scalar or a list of scalars.
func wfScalars(n *yaml.Node) []string {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
		return out
	}
	return nil
}

// wfDispatchInput returns a workflow_dispatch input's type and options, ok=false if absent.
func wfDispatchInput(wf wfWorkflow, input string) (typ string, options []string, ok bool) {
	dispatch, present := wfTriggers(wf)["workflow_dispatch"]
	if !present {
		return "", nil, false
	}
	in := wfMapping(wfMapping(dispatch)["inputs"])[input]
	if in == nil {
		return "", nil, false
	}
	spec := wfMapping(in)
	if t := spec["type"]; t != nil {
		typ = t.Value
	}
	return typ, wfScalars(spec["options"]), true
}

var wfDispatchStackRe = regexp.MustCompile(`^\$\{\{\s*(inputs|github\.event\.inputs)\.stack\s*\}\}$`)

// wfStackOf resolves a pulumi/actions stack-name ("dev", "org/dev", "${{ vars.ORG }}/dev",
// "${{ vars.ORG }}/${{ inputs.stack }}") to the stack: a literal name, or dispatch=true when it
// is the workflow_dispatch `stack` input. ok=false when it cannot be told.
func wfStackOf(stackName string) (stack string, dispatch, ok bool) {
	last := stackName
	if i := strings.LastIndex(stackName, "/"); i >= 0 {
		last = stackName[i+1:]
	}
	last = strings.TrimSpace(last)
	switch {
	case wfDispatchStackRe.MatchString(last):
		return "", true, true
	case last == "" || strings.Contains(last, "${{"):
		return "", false, false
	default:
		return last, false, true
	}
}

// wfCommandRe finds commands at command position in a shell script line.
var wfCommandRe = regexp.MustCompile(`(?:^|[;&|(]|\bthen\b|\bdo\b)\s*(make|go\s+run)\b([^;&|()<>#]*)`)

// wfRedirectRe matches a shell redirection (`2>&1`, `>out.log`, `< in`), which is no argument.
var wfRedirectRe = regexp.MustCompile(`\s\d*(?:[<>]+&?)\s*[-\w./]*`)

// wfCommands returns the commands at command position in a run script, redirections removed.
func wfCommands(script string) [][]string {
	var found [][]string
	for _, line := range strings.Split(script, "\n") {
		found = append(found, wfCommandRe.FindAllStringSubmatch(wfRedirectRe.ReplaceAllString(line, " "), -1)...)
	}
	return found
}

// wfMakeCall is one `make` invocation in a run script.
type wfMakeCall struct {
	Targets []string
	Vars    map[string]string
}

func wfMakeCalls(script string) []wfMakeCall {
	var calls []wfMakeCall
	for _, m := range wfCommands(script) {
		if m[1] != "make" {
			continue
		}
		c := wfMakeCall{Vars: map[string]string{}}
		for _, tok := range strings.Fields(m[2]) {
			switch {
			case strings.HasPrefix(tok, "-"):
			case strings.Contains(tok, "="):
				k, v, _ := strings.Cut(tok, "=")
				c.Vars[k] = v
			default:
				c.Targets = append(c.Targets, tok)
			}
		}
		calls = append(calls, c)
	}
	return calls
}

// wfGoRunPaths returns the package paths of every `go run ./...` in a run script.
func wfGoRunPaths(script string) []string {
	var paths []string
	for _, m := range wfCommands(script) {
		if m[1] == "make" {
			continue
		}
		for _, tok := range strings.Fields(m[2]) {
			if strings.HasPrefix(tok, "-") {
				continue
			}
			if strings.HasPrefix(tok, "./") || tok == "." {
				paths = append(paths, tok)
			}
			break // the first non-flag argument is the package
		}
	}
	return paths
}

func wfJobRunContains(j *wfJob, text string) bool {
	for _, s := range j.Steps {
		if strings.Contains(s.Run, text) {
			return true
		}
	}
	return false
}

func wfRunsMake(j *wfJob, target string) bool {
	for _, s := range j.Steps {
		for _, c := range wfMakeCalls(s.Run) {
			if slices.Contains(c.Targets, target) {
				return true
			}
		}
	}
	return false
}

// wfStepRef is one step of one job, with where it is.
type wfStepRef struct {
	File  *wfFile
	JobID string
	Job   *wfJob
	Index int // 0-based position in Job.Steps
	Step  wfStep
}

// where names the step for failure messages: `<path>: job "<id>" <step label>`.
func (r wfStepRef) where() string {
	return fmt.Sprintf("%s: job %q %s", r.File.Path, r.JobID, wfStepLabel(r.Index, r.Step))
}

// wfJobSteps returns the steps of one job of f, in order; none for an empty (null) job.
func wfJobSteps(f *wfFile, jobID string) []wfStepRef {
	j := f.WF.Jobs[jobID]
	if j == nil {
		return nil
	}
	out := make([]wfStepRef, 0, len(j.Steps))
	for i, s := range j.Steps {
		out = append(out, wfStepRef{File: f, JobID: jobID, Job: j, Index: i, Step: s})
	}
	return out
}

// wfFileSteps returns every step of f, job by job in wfJobNames order.
func wfFileSteps(f *wfFile) []wfStepRef {
	var out []wfStepRef
	for _, jn := range wfJobNames(f.WF) {
		out = append(out, wfJobSteps(f, jn)...)
	}
	return out
}

// wfAllSteps returns every step of every file, file by file.
func wfAllSteps(files []wfFile) []wfStepRef {
	var out []wfStepRef
	for fi := range files {
		out = append(out, wfFileSteps(&files[fi])...)
	}
	return out
}

// wfPulumiSteps returns the pulumi/actions steps of every file.
func wfPulumiSteps(files []wfFile) []wfStepRef {
	var out []wfStepRef
	for _, r := range wfAllSteps(files) {
		if wfUsesAction(r.Step, "pulumi/actions") {
			out = append(out, r)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// Checks

// wfCheckStructure: every file has triggers and jobs, every job a runner and a timeout, every step
// runs something.
func wfCheckStructure(files []wfFile, _ wfRepo) []string {
	var problems []string
	for _, f := range files {
		if f.WF.On.Kind == 0 || len(wfTriggers(f.WF)) == 0 {
			problems = append(problems, fmt.Sprintf("%s: no `on:` triggers", f.Path))
		}
		if len(f.WF.Jobs) == 0 {
			problems = append(problems, fmt.Sprintf("%s: no jobs", f.Path))
		}
		for _, jn := range wfJobNames(f.WF) {
			j := f.WF.Jobs[jn]
			if j == nil {
				problems = append(problems, fmt.Sprintf("%s: job %q is empty", f.Path, jn))
				continue
			}
			if j.Uses != "" {
				continue // a reusable-workflow call: runner and timeout are the callee's
			}
			if j.RunsOn.Kind == 0 {
				problems = append(problems, fmt.Sprintf("%s: job %q has no runs-on", f.Path, jn))
			}
			if j.TimeoutMinutes.Kind == 0 {
				problems = append(problems, fmt.Sprintf("%s: job %q has no timeout-minutes (the default is 360)", f.Path, jn))
			} else if v := j.TimeoutMinutes.Value; j.TimeoutMinutes.Tag == "!!int" && (v == "0" || strings.HasPrefix(v, "-")) {
				problems = append(problems, fmt.Sprintf("%s: job %q has timeout-minutes %s", f.Path, jn, v))
			}
			if len(j.Steps) == 0 {
				problems = append(problems, fmt.Sprintf("%s: job %q has no steps", f.Path, jn))
			}
			for _, r := range wfJobSteps(&f, jn) {
				if (r.Step.Uses == "") == (r.Step.Run == "") {
					problems = append(problems, fmt.Sprintf("%s must have exactly one of uses or run", r.where()))
				}
			}
		}
	}
	return problems
}

// wfJobScopes are the only job-level permissions allowed, with the value each may take.
var wfJobScopes = map[string]string{"contents": "read", "id-token": "write", "pull-requests": "write"}

// wfCheckPermissions: the token reads contents and nothing else by default; a job adds
// id-token: write only where it logs in to Azure or Pulumi Cloud, and pull-requests: write only
// where pulumi/actions comments a preview on the PR.
func wfCheckPermissions(files []wfFile, _ wfRepo) []string {
	var problems []string
	for _, f := range files {
		top := &f.WF.Permissions
		switch top.Kind {
		case 0:
			problems = append(problems, fmt.Sprintf("%s: no top-level permissions (the token would get the repository default); set `permissions: contents: read`", f.Path))
		case yaml.MappingNode:
			for k, v := range wfMapping(top) {
				if !(k == "contents" && (v.Value == "read" || v.Value == "none")) && v.Value != "none" {
					problems = append(problems, fmt.Sprintf("%s: top-level permissions grant %s: %s; only contents: read is allowed at the top, jobs add what they need", f.Path, k, v.Value))
				}
			}
		default:
			problems = append(problems, fmt.Sprintf("%s: top-level permissions %q; list the scopes (contents: read)", f.Path, top.Value))
		}

		for _, jn := range wfJobNames(f.WF) {
			j := f.WF.Jobs[jn]
			if j == nil {
				continue
			}
			logsIn := wfJobUses(j, "azure/login") || wfJobUses(j, "pulumi/auth-actions")
			comments := false
			for _, s := range j.Steps {
				if wfUsesAction(s, "pulumi/actions") && s.With["command"] == "preview" && wfIsTrue(s.With["comment-on-pr"]) {
					comments = true
				}
			}
			granted := map[string]string{}
			switch j.Permissions.Kind {
			case 0:
			case yaml.MappingNode:
				for k, v := range wfMapping(&j.Permissions) {
					granted[k] = v.Value
					if v.Value == "none" {
						continue
					}
					if want, ok := wfJobScopes[k]; !ok || v.Value != want {
						problems = append(problems, fmt.Sprintf("%s: job %q grants %s: %s; allowed at job level: contents: read, id-token: write, pull-requests: write", f.Path, jn, k, v.Value))
					}
				}
			default:
				problems = append(problems, fmt.Sprintf("%s: job %q permissions %q; list the scopes", f.Path, jn, j.Permissions.Value))
			}
			if granted["id-token"] == "write" && !logsIn {
				problems = append(problems, fmt.Sprintf("%s: job %q has id-token: write but neither azure/login nor pulumi/auth-actions", f.Path, jn))
			}
			if logsIn && granted["id-token"] != "write" {
				problems = append(problems, fmt.Sprintf("%s: job %q logs in through OIDC and needs id-token: write", f.Path, jn))
			}
			if granted["pull-requests"] == "write" && !comments {
				problems = append(problems, fmt.Sprintf("%s: job %q has pull-requests: write but no pulumi/actions preview step with comment-on-pr: true", f.Path, jn))
			}
			if j.Permissions.Kind == yaml.MappingNode && granted["contents"] != "read" && wfJobUses(j, "actions/checkout") {
				problems = append(problems, fmt.Sprintf("%s: job %q sets permissions without contents: read but checks out the repository", f.Path, jn))
			}
		}
	}
	return problems
}

var (
	wfPinnedRe   = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$`)
	wfUsesLineRe = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*['"]?([^\s'"#]+)['"]?\s*(#.*)?$`)
	wfVersionRe  = regexp.MustCompile(`^#\s*(v\d+(?:\.\d+){0,2})\b`)
)

// wfCheckPins: every action is pinned to a full commit SHA, with a `# vX.Y.Z` comment, and one
// action is pinned to one SHA across all workflows.
func wfCheckPins(files []wfFile, _ wfRepo) []string {
	var problems []string
	shas := map[string]map[string]bool{}     // action -> shas
	versions := map[string]map[string]bool{} // action@sha -> version comments
	for _, f := range files {
		for _, jn := range wfJobNames(f.WF) {
			j := f.WF.Jobs[jn]
			if j == nil {
				continue
			}
			uses := []struct{ label, uses string }{}
			if j.Uses != "" {
				uses = append(uses, struct{ label, uses string }{"(reusable workflow)", j.Uses})
			}
			for _, r := range wfJobSteps(&f, jn) {
				if r.Step.Uses != "" {
					uses = append(uses, struct{ label, uses string }{wfStepLabel(r.Index, r.Step), r.Step.Uses})
				}
			}
			for _, u := range uses {
				if strings.HasPrefix(u.uses, "./") {
					continue
				}
				if strings.HasPrefix(u.uses, "docker://") {
					if !strings.Contains(u.uses, "@sha256:") {
						problems = append(problems, fmt.Sprintf("%s: job %q %s uses %q, not pinned to an image digest", f.Path, jn, u.label, u.uses))
					}
					continue
				}
				if !wfPinnedRe.MatchString(u.uses) {
					problems = append(problems, fmt.Sprintf("%s: job %q %s uses %q, which is not pinned to a 40-hex commit SHA", f.Path, jn, u.label, u.uses))
					continue
				}
				name, sha, _ := strings.Cut(u.uses, "@")
				if shas[name] == nil {
					shas[name] = map[string]bool{}
				}
				shas[name][sha] = true
			}
		}
		for n, line := range strings.Split(f.Raw, "\n") {
			m := wfUsesLineRe.FindStringSubmatch(line)
			if m == nil || strings.HasPrefix(m[1], "./") || strings.HasPrefix(m[1], "docker://") || !wfPinnedRe.MatchString(m[1]) {
				continue
			}
			v := wfVersionRe.FindStringSubmatch(strings.TrimSpace(m[2]))
			if v == nil {
				problems = append(problems, fmt.Sprintf("%s:%d: %s has no `# vX.Y.Z` comment naming the pinned release", f.Path, n+1, m[1]))
				continue
			}
			if versions[m[1]] == nil {
				versions[m[1]] = map[string]bool{}
			}
			versions[m[1]][v[1]] = true
		}
	}
	for _, name := range wfSortedKeys(shas) {
		if len(shas[name]) > 1 {
			problems = append(problems, fmt.Sprintf("%s is pinned to different commits across workflows: %v", name, wfSortedKeys(shas[name])))
		}
	}
	for _, pin := range wfSortedKeys(versions) {
		if len(versions[pin]) > 1 {
			problems = append(problems, fmt.Sprintf("%s carries different version comments: %v", pin, wfSortedKeys(versions[pin])))
		}
	}
	return problems
}

func wfSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// wfCheckCommands: every `make <target>` names a Makefile target and every `go run ./<path>` an
// existing directory.
func wfCheckCommands(files []wfFile, repo wfRepo) []string {
	var problems []string
	for _, r := range wfAllSteps(files) {
		for _, c := range wfMakeCalls(r.Step.Run) {
			for _, target := range c.Targets {
				if !repo.MakeTargets[target] {
					problems = append(problems, fmt.Sprintf("%s: make target %q is not defined in the Makefile", r.where(), target))
				}
			}
		}
		for _, p := range wfGoRunPaths(r.Step.Run) {
			dir := strings.TrimSuffix(strings.TrimSuffix(p, "/..."), "/")
			if st, err := os.Stat(filepath.Join(repo.Root, filepath.FromSlash(dir))); err != nil || !st.IsDir() {
				problems = append(problems, fmt.Sprintf("%s: go run %s: no such directory", r.where(), p))
			}
		}
	}
	return problems
}

// wfCheckStacks: every stack named (stack-name, STACK=, the dispatch choices) has a
// Pulumi.<stack>.yaml, and every Pulumi.<stack>.yaml is offered by each dispatch `stack` input.
func wfCheckStacks(files []wfFile, repo wfRepo) []string {
	var problems []string
	literal := func(where, stack string) {
		if !repo.Stacks[stack] {
			problems = append(problems, fmt.Sprintf("%s: stack %q has no Pulumi.%s.yaml", where, stack, stack))
		}
	}
	for _, p := range wfPulumiSteps(files) {
		stack, dispatch, ok := wfStackOf(p.Step.With["stack-name"])
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: stack-name %q: cannot tell the stack; use a literal or ${{ inputs.stack }}", p.where(), p.Step.With["stack-name"]))
		case dispatch:
			if typ, _, present := wfDispatchInput(p.File.WF, "stack"); !present || typ != "choice" {
				problems = append(problems, fmt.Sprintf("%s: stack-name uses inputs.stack but the workflow has no workflow_dispatch `stack` input of type choice", p.where()))
			}
		default:
			literal(p.where(), stack)
		}
	}
	for fi := range files {
		f := &files[fi]
		for _, r := range wfFileSteps(f) {
			for _, c := range wfMakeCalls(r.Step.Run) {
				if v, ok := c.Vars["STACK"]; ok {
					where := fmt.Sprintf("%s: STACK=%s", r.where(), v)
					if strings.Contains(v, "$") {
						problems = append(problems, where+": cannot tell the stack; use a literal")
						continue
					}
					literal(where, v)
				}
			}
		}
		typ, options, present := wfDispatchInput(f.WF, "stack")
		if !present {
			continue
		}
		where := fmt.Sprintf("%s: workflow_dispatch input stack", f.Path)
		if typ != "choice" {
			problems = append(problems, fmt.Sprintf("%s has type %q; use type: choice with one option per Pulumi.<stack>.yaml", where, typ))
		}
		for _, o := range options {
			literal(where, o)
		}
		for _, s := range wfSortedKeys(repo.Stacks) {
			if !slices.Contains(options, s) {
				problems = append(problems, fmt.Sprintf("%s: Pulumi.%s.yaml is not offered (options %v)", where, s, options))
			}
		}
	}
	return problems
}

var wfExprRe = regexp.MustCompile(`\$\{\{[^}]*\}\}`)

// wfConfigMap parses a pulumi/actions config-map value. GitHub expressions are swapped for
// placeholders before parsing (the runner substitutes them before the action reads the input)
// and swapped back into the values.
func wfConfigMap(s string) (map[string]string, error) {
	var exprs []string
	masked := wfExprRe.ReplaceAllStringFunc(s, func(e string) string {
		exprs = append(exprs, e)
		return fmt.Sprintf("__expr%d__", len(exprs)-1)
	})
	var parsed map[string]struct {
		Value  *string `yaml:"value"`
		Secret bool    `yaml:"secret"`
	}
	if err := yaml.Unmarshal([]byte(masked), &parsed); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range parsed {
		if v.Value == nil {
			return nil, fmt.Errorf("key %s has no value", k)
		}
		val := *v.Value
		for i, e := range exprs {
			val = strings.ReplaceAll(val, fmt.Sprintf("__expr%d__", i), e)
		}
		out[k] = val
	}
	return out, nil
}

// wfCheckConfigMaps: config-map values parse, every key in the project's namespace is declared in
// Pulumi.yaml (the CLI rejects undeclared keys), and every preview or up builds the consumer image
// from the commit under test (aks-edw:imageSourceRef).
func wfCheckConfigMaps(files []wfFile, repo wfRepo) []string {
	var problems []string
	imageKey := repo.Project + ":imageSourceRef"
	for _, p := range wfPulumiSteps(files) {
		cm, err := wfConfigMap(p.Step.With["config-map"])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: config-map does not parse: %v", p.where(), err))
			continue
		}
		for _, k := range wfSortedKeys(cm) {
			ns, key, ok := strings.Cut(k, ":")
			if ok && ns == repo.Project && !repo.ConfigKeys[key] {
				problems = append(problems, fmt.Sprintf("%s: config-map key %s is not declared in Pulumi.yaml", p.where(), k))
			}
		}
		cmd := p.Step.With["command"]
		if cmd != "preview" && cmd != "up" {
			continue
		}
		want := "${{ github.sha }}"
		if _, pr := wfTriggers(p.File.WF)["pull_request"]; pr {
			want = "${{ github.event.pull_request.head.sha }}"
		}
		if got, ok := cm[imageKey]; !ok || got != want {
			problems = append(problems, fmt.Sprintf("%s: config-map must set %s to %s (the commit the image is built from), got %q", p.where(), imageKey, want, got))
		}
	}
	return problems
}

const wfForkGuard = "github.event.pull_request.head.repo.full_name == github.repository"

// wfCheckPipelines: the delivery the README promises exists: checks and a commented dev preview
// on pull requests (an offline plan for forks), up of dev on pushes to main, up and destroy of a
// chosen stack by hand.
func wfCheckPipelines(files []wfFile, _ wfRepo) []string {
	var problems []string
	var prTest, prLint, prPreview, prPlan, pushUp, dispatchUp, dispatchDestroy bool
	for fi := range files {
		f := &files[fi]
		triggers := wfTriggers(f.WF)
		if _, bad := triggers["pull_request_target"]; bad {
			problems = append(problems, fmt.Sprintf("%s: pull_request_target runs fork code with the base repository's token and OIDC; use pull_request", f.Path))
		}
		_, onPR := triggers["pull_request"]
		onMain := false
		if push, ok := triggers["push"]; ok {
			onMain = slices.Contains(wfScalars(wfMapping(push)["branches"]), "main")
		}
		_, onDispatch := triggers["workflow_dispatch"]
		_, actions, _ := wfDispatchInput(f.WF, "action")

		for _, jn := range wfJobNames(f.WF) {
			j := f.WF.Jobs[jn]
			if j == nil {
				continue
			}
			if onPR {
				prTest = prTest || wfRunsMake(j, "test")
				prLint = prLint || wfRunsMake(j, "lint")
				if wfRunsMake(j, "plan") {
					if !strings.Contains(j.If, "!=") || !strings.Contains(j.If, "head.repo.full_name") {
						problems = append(problems, fmt.Sprintf("%s: job %q runs the offline plan; it is for fork pull requests (if: github.event.pull_request.head.repo.full_name != github.repository)", f.Path, jn))
					}
					if !wfJobRunContains(j, "GITHUB_STEP_SUMMARY") {
						problems = append(problems, fmt.Sprintf("%s: job %q runs the offline plan but does not write it to $GITHUB_STEP_SUMMARY", f.Path, jn))
					}
					prPlan = true
				}
			}
			for _, r := range wfJobSteps(f, jn) {
				s := r.Step
				if !wfUsesAction(s, "pulumi/actions") {
					continue
				}
				stack, dispatch, _ := wfStackOf(s.With["stack-name"])
				cmd := s.With["command"]
				if onPR && cmd == "preview" {
					if !strings.Contains(strings.Join(strings.Fields(j.If), " "), wfForkGuard) {
						problems = append(problems, fmt.Sprintf("%s must skip fork pull requests (if: %s): forks get no OIDC token", r.where(), wfForkGuard))
					}
					if stack == "dev" && wfIsTrue(s.With["comment-on-pr"]) {
						prPreview = true
					}
				}
				if onMain && cmd == "up" && stack == "dev" {
					pushUp = true
				}
				if onDispatch && dispatch {
					dispatchUp = dispatchUp || (cmd == "up" && slices.Contains(actions, "up"))
					dispatchDestroy = dispatchDestroy || (cmd == "destroy" && slices.Contains(actions, "destroy"))
				}
			}
		}
	}
	required := []struct {
		ok   bool
		what string
	}{
		{prTest, "a pull_request workflow that runs `make test` (the README's test command)"},
		{prLint, "a pull_request workflow that runs `make lint`"},
		{prPreview, "a pull_request workflow with a pulumi/actions step: command: preview, stack dev, comment-on-pr: true"},
		{prPlan, "a pull_request job that runs `make plan STACK=dev` for fork pull requests"},
		{pushUp, "a push-to-main workflow with a pulumi/actions step: command: up, stack dev"},
		{dispatchUp, "a workflow_dispatch workflow that runs pulumi/actions command: up for the chosen stack (action input offering up)"},
		{dispatchDestroy, "a workflow_dispatch workflow that runs pulumi/actions command: destroy for the chosen stack (action input offering destroy)"},
	}
	for _, r := range required {
		if !r.ok {
			problems = append(problems, "missing: "+r.what)
		}
	}
	return problems
}

// wfConcurrency returns a concurrency setting's group and cancel-in-progress.
func wfConcurrency(n *yaml.Node) (group, cancel string, ok bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, "", true
	case yaml.MappingNode:
		m := wfMapping(n)
		if g := m["group"]; g != nil {
			group = g.Value
		}
		if c := m["cancel-in-progress"]; c != nil {
			cancel = c.Value
		}
		return group, cancel, group != ""
	}
	return "", "", false
}

// wfCheckDeployJobs: a job that runs pulumi up or destroy runs in the GitHub environment named
// after its stack (reviewers, federated credential subject) and in a concurrency group per stack
// that never cancels a running deployment.
func wfCheckDeployJobs(files []wfFile, _ wfRepo) []string {
	var problems []string
	for _, p := range wfPulumiSteps(files) {
		cmd := p.Step.With["command"]
		if cmd != "up" && cmd != "destroy" && !strings.Contains(cmd, "${{") {
			continue
		}
		stack, dispatch, ok := wfStackOf(p.Step.With["stack-name"])
		if !ok {
			continue // reported by the stacks check
		}
		stackRef := stack
		if dispatch {
			stackRef = "inputs.stack"
		}

		envName := p.Job.Environment.Value
		if p.Job.Environment.Kind == yaml.MappingNode {
			if n := wfMapping(&p.Job.Environment)["name"]; n != nil {
				envName = n.Value
			}
		}
		envOK := envName == stack
		if dispatch {
			envOK = wfDispatchStackRe.MatchString(strings.TrimSpace(envName))
		}
		if !envOK {
			problems = append(problems, fmt.Sprintf("%s: pulumi %s must run in the job's environment %q (the stack's), got environment %q", p.where(), cmd, wfEnvFor(stack, dispatch), envName))
		}

		group, cancel, ok := wfConcurrency(&p.Job.Concurrency)
		if !ok {
			group, cancel, ok = wfConcurrency(&p.File.WF.Concurrency)
		}
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: pulumi %s has no concurrency group; two deployments of one stack could run at once", p.where(), cmd))
		case !strings.Contains(group, stackRef):
			problems = append(problems, fmt.Sprintf("%s: concurrency group %q is not per stack (should contain %s)", p.where(), group, stackRef))
		case cancel != "" && cancel != "false":
			problems = append(problems, fmt.Sprintf("%s: concurrency cancel-in-progress is %s; a running deployment must never be cancelled", p.where(), cancel))
		}
	}
	return problems
}

// wfCheckAfterDeploy: a `pulumi up` that runs on push (a literal stack, not a dispatch input) is
// followed in its job by `pulumi preview --expect-no-changes` of the same stack (the idempotency
// check AVM runs), then by `make verify STACK=<that stack>` (the event-driven loop on what was
// deployed), and by a step that puts verify's output in the job summary even when it failed.
func wfCheckAfterDeploy(files []wfFile, _ wfRepo) []string {
	var problems []string
	for _, p := range wfPulumiSteps(files) {
		if p.Step.With["command"] != "up" {
			continue
		}
		stack, dispatch, ok := wfStackOf(p.Step.With["stack-name"])
		if !ok || dispatch {
			continue
		}
		later := wfJobSteps(p.File, p.JobID)[p.Index+1:]
		previewAt, verifyAt, summaryAt := -1, -1, -1
		for _, r := range later {
			switch {
			case wfUsesAction(r.Step, "pulumi/actions") && r.Step.With["command"] == "preview":
				if s, _, ok := wfStackOf(r.Step.With["stack-name"]); ok && s == stack && r.Step.With["expect-no-changes"] == "true" && previewAt < 0 {
					previewAt = r.Index
				}
			case r.Step.Run != "":
				for _, c := range wfMakeCalls(r.Step.Run) {
					if slices.Contains(c.Targets, "verify") && c.Vars["STACK"] == stack && verifyAt < 0 {
						verifyAt = r.Index
					}
				}
				if strings.Contains(r.Step.Run, "GITHUB_STEP_SUMMARY") && strings.Contains(r.Step.Run, "verify") &&
					(strings.Contains(r.Step.If, "always()") || strings.Contains(r.Step.If, "!cancelled()")) && summaryAt < 0 {
					summaryAt = r.Index
				}
			}
		}
		switch {
		case previewAt < 0:
			problems = append(problems, fmt.Sprintf("%s: pulumi up of %s is not followed by a preview of it with expect-no-changes: true", p.where(), stack))
		case verifyAt < 0:
			problems = append(problems, fmt.Sprintf("%s: pulumi up of %s is not followed by `make verify STACK=%s`", p.where(), stack, stack))
		case verifyAt < previewAt:
			problems = append(problems, fmt.Sprintf("%s: make verify runs before the expect-no-changes preview", p.where()))
		case summaryAt < verifyAt:
			problems = append(problems, fmt.Sprintf("%s: no step after make verify writes its output to $GITHUB_STEP_SUMMARY under if: always() or !cancelled()", p.where()))
		}
	}
	return problems
}

func wfEnvFor(stack string, dispatch bool) string {
	if dispatch {
		return "${{ inputs.stack }}"
	}
	return stack
}

var wfSecretRe = regexp.MustCompile(`secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[)|secrets:\s*inherit`)

// wfCheckSecrets: no stored secret is used; only the automatic GITHUB_TOKEN.
func wfCheckSecrets(files []wfFile, _ wfRepo) []string {
	var problems []string
	for _, f := range files {
		for n, line := range strings.Split(f.Raw, "\n") {
			for _, m := range wfSecretRe.FindAllStringSubmatch(line, -1) {
				if m[1] == "GITHUB_TOKEN" {
					continue
				}
				ref := m[0]
				if m[1] != "" {
					ref = "secrets." + m[1]
				}
				problems = append(problems, fmt.Sprintf("%s:%d: %s: only secrets.GITHUB_TOKEN is allowed (Azure and Pulumi Cloud log in through OIDC; identifiers are vars)", f.Path, n+1, ref))
			}
		}
	}
	return problems
}

// wfE2EKubelogin is the kubelogin version e2e/tools.sh builds (KUBELOGIN_VERSION), "" if none.
func wfE2EKubelogin() string {
	b, _ := os.ReadFile("e2e/tools.sh")
	if m := regexp.MustCompile(`(?m)^KUBELOGIN_VERSION=(v\S+)`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// wfKubeloginRe is a pinned kubelogin install: an exact vX.Y.Z, never @latest.
var wfKubeloginRe = regexp.MustCompile(`go install github\.com/Azure/kubelogin@v\d+\.\d+\.\d+\b`)

// wfCheckKubelogin: the cluster is Entra-only (localAccounts false), so its kubeconfig runs
// kubelogin: every job that signs in to Azure (and so runs Pulumi against the cluster) installs a
// pinned kubelogin after the az login and has it sign in non-interactively with that login.
func wfCheckKubelogin(files []wfFile, _ wfRepo) []string {
	var problems []string
	for _, f := range files {
		for _, jn := range wfJobNames(f.WF) {
			j := f.WF.Jobs[jn]
			if j == nil || !wfJobUses(j, "azure/login") {
				continue
			}
			loginAt, kubeloginAt := -1, -1
			for i, st := range j.Steps {
				if strings.HasPrefix(st.Uses, "azure/login@") {
					loginAt = i
				}
				if wfKubeloginRe.MatchString(st.Run) {
					kubeloginAt = i
				}
			}
			if kubeloginAt < 0 {
				problems = append(problems, fmt.Sprintf("%s: job %q signs in to Azure but installs no pinned kubelogin (go install github.com/Azure/kubelogin@vX.Y.Z)", f.Path, jn))
			} else if kubeloginAt < loginAt {
				problems = append(problems, fmt.Sprintf("%s: job %q installs kubelogin before the az login it signs in with", f.Path, jn))
			}
			// docs/cloud-notes.md, "Tokens in CI": azurecli reuses azure/login's assertion, which
			// expires after 5 minutes; workloadidentity with the job's id-token permission asks
			// GitHub for a fresh one each time, for the identity azure/login signed in as.
			if j.Env["AAD_LOGIN_METHOD"] != "workloadidentity" {
				problems = append(problems, fmt.Sprintf("%s: job %q does not set AAD_LOGIN_METHOD: workloadidentity (azurecli reuses azure/login's assertion, which expires after 5 minutes; devicecode waits for a person)", f.Path, jn))
			}
			if idToken := wfMapping(&j.Permissions)["id-token"]; idToken == nil || idToken.Value != "write" {
				problems = append(problems, fmt.Sprintf("%s: job %q runs kubelogin in the workloadidentity mode without permissions id-token: write (it asks GitHub for its OIDC token)", f.Path, jn))
			}
			if j.Env["AZURE_CLIENT_ID"] == "" || j.Env["AZURE_CLIENT_ID"] != j.Env["ARM_CLIENT_ID"] {
				problems = append(problems, fmt.Sprintf("%s: job %q: AZURE_CLIENT_ID %q must be the identity azure/login and Pulumi sign in as (ARM_CLIENT_ID %q)", f.Path, jn, j.Env["AZURE_CLIENT_ID"], j.Env["ARM_CLIENT_ID"]))
			}
			if j.Env["AZURE_TENANT_ID"] == "" || j.Env["AZURE_TENANT_ID"] != j.Env["ARM_TENANT_ID"] {
				problems = append(problems, fmt.Sprintf("%s: job %q: AZURE_TENANT_ID %q must be ARM_TENANT_ID %q", f.Path, jn, j.Env["AZURE_TENANT_ID"], j.Env["ARM_TENANT_ID"]))
			}
			for _, st := range j.Steps {
				if m := wfKubeloginRe.FindString(st.Run); m != "" && !strings.HasSuffix(m, "@"+wfE2EKubelogin()) {
					problems = append(problems, fmt.Sprintf("%s: job %q installs %s, but make e2e proves kubelogin %s (e2e/tools.sh KUBELOGIN_VERSION)", f.Path, jn, m, wfE2EKubelogin()))
				}
			}
		}
	}
	return problems
}
