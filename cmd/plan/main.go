// Command plan prints the offline plan for a stack: what `pulumi up` would create (key settings,
// the resource tree, the Kubernetes manifests as YAML), computed by running the program under
// the test mocks. It needs no Azure credentials and no Pulumi CLI.
//
//	go run ./cmd/plan -stack dev [-dir .] [-o file] [-markdown] [-config key=value ...]
//
// Exit status: 0 on success, 1 when the program fails for the stack's config, 2 on usage errors
// (including a stack with no Pulumi.<stack>.yaml).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/ops/plan"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stack := fs.String("stack", "", "the stack to plan: one with a Pulumi.<stack>.yaml in -dir (required)")
	dir := fs.String("dir", ".", "the project directory, holding Pulumi.yaml and the stack files")
	outPath := fs.String("o", "", "write the plan to this file instead of standard output")
	markdown := fs.Bool("markdown", false, "write the Markdown page committed as docs/plan.<stack>.md")
	overrides := configFlag{}
	fs.Var(overrides, "config", "set a config key (declared in Pulumi.yaml, without the aks-edw: prefix) on top of the stack file, "+
		"e.g. -config imageSourceRef=<commit>; repeatable")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./cmd/plan -stack <stack> [-dir .] [-o file] [-markdown] [-config key=value ...]\n\n"+
			"Prints what `pulumi up` would create for the stack, computed offline under mocks.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "plan: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}

	stacks, err := pulumitest.StackNames(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "plan: %v\n", err)
		return 2
	}
	if !slices.Contains(stacks, *stack) {
		if *stack == "" {
			fmt.Fprintf(stderr, "plan: -stack is required; stacks in %s: %s\n", *dir, strings.Join(stacks, ", "))
		} else {
			fmt.Fprintf(stderr, "plan: unknown stack %q: there is no %s; stacks in %s: %s\n",
				*stack, "Pulumi."+*stack+".yaml", *dir, strings.Join(stacks, ", "))
		}
		return 2
	}

	p, err := plan.RunWithConfig(*dir, *stack, overrides)
	if err != nil {
		fmt.Fprintf(stderr, "plan: %v\n", err)
		return 1
	}
	var buf bytes.Buffer
	if *markdown {
		err = p.Markdown(&buf)
	} else {
		err = p.Render(&buf)
	}
	if err != nil {
		fmt.Fprintf(stderr, "plan: rendering the plan for %s: %v\n", *stack, err)
		return 1
	}
	if *outPath == "" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			fmt.Fprintf(stderr, "plan: %v\n", err)
			return 1
		}
		return 0
	}
	if err := os.WriteFile(*outPath, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintf(stderr, "plan: writing %s: %v\n", *outPath, err)
		return 1
	}
	fmt.Fprintf(stderr, "plan: wrote the %s plan to %s\n", *stack, *outPath)
	return 0
}

// configFlag collects repeated -config key=value flags.
type configFlag map[string]string

func (c configFlag) String() string {
	var kv []string
	for k, v := range c {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

func (c configFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimPrefix(strings.TrimSpace(k), "aks-edw:")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	c[k] = v
	return nil
}
