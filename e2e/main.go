// Command e2e runs the stack's Kubernetes half for real, with no cloud: the Pulumi engine and
// the Kubernetes provider (built from source by e2e/tools.sh) deploy the same workload.Deploy the
// stack runs against a local control plane (etcd, kube-apiserver, controller manager, scheduler
// and kwok's fake nodes) that serves the real KEDA and Karpenter CRDs. Plain strings stand in for
// the Azure outputs, and a ConfigMap plays the AKS cluster.
//
// It prints one line per scenario step with its evidence, read from the engine's events and the
// API server, then `e2e: N/16 steps hold`, and exits non-zero unless all hold. `make e2e` builds
// the tools and runs it. Usage: go run ./e2e [-tools DIR] [-break KIND] [-keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aks-edw/aks-edw/harness/localcluster"
)

func main() { os.Exit(run()) }

func run() int {
	defaultTools := os.Getenv("E2E_TOOLS_DIR")
	if defaultTools == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = filepath.Join(os.Getenv("HOME"), ".cache")
		}
		defaultTools = filepath.Join(cache, "aks-edw-e2e")
	}
	tools := flag.String("tools", defaultTools, "e2e/tools.sh's cache folder (binaries in its bin/)")
	brk := flag.String("break", os.Getenv("E2E_BREAK"), "deploy a deliberately broken object from the first step: "+breakKinds()+" (the run must then fail with the API server's message)")
	keep := flag.Bool("keep", false, "keep the work folder (state, logs, kubeconfig) even when every step holds")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up on the whole run after this long")
	nodeStart := flag.Duration("node-start", envDuration("E2E_NODE_START", defaultNodeStart), "how long a node Karpenter launches takes to turn Ready (a VM's boot; env E2E_NODE_START)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "e2e: unexpected arguments %q\n", flag.Args())
		return 2
	}
	if *nodeStart < 0 || *nodeStart > 5*time.Minute {
		fmt.Fprintf(os.Stderr, "e2e: -node-start %s must be between 0 and 5m\n", *nodeStart)
		return 2
	}
	if *brk != "" {
		if _, ok := breaks[*brk]; !ok {
			fmt.Fprintf(os.Stderr, "e2e: unknown -break %q (known: %s)\n", *brk, breakKinds())
			return 2
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	work, err := os.MkdirTemp("", "aks-edw-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	bin := filepath.Join(*tools, "bin")
	r := &runner{tools: *tools, bin: bin, work: work, brk: *brk, out: os.Stdout, nodeStart: *nodeStart}
	passed, total, err := r.run(ctx)

	// Nothing may outlive the run: the control plane, the KEDA operator, the engine and its
	// provider plugin (all from the tools' bin), and the consumer processes (from the work bin).
	ownBin := filepath.Join(work, "bin")
	leftErr := errors.Join(waitNoLeftovers(bin, 15*time.Second), waitNoLeftovers(ownBin, 15*time.Second))
	if leftErr != nil {
		fmt.Printf("e2e: %v\n", leftErr)
	} else {
		fmt.Printf("e2e: nothing left running (no process from %s or %s)\n", bin, ownBin)
	}
	failed := err != nil || leftErr != nil || passed != total
	if failed || *keep {
		fmt.Printf("e2e: work folder kept: %s (pulumi.log, logs/, kubeconfig, state/)\n", work)
	} else {
		_ = os.RemoveAll(work)
	}
	if err != nil {
		fmt.Printf("e2e: FAILED: %v\n", err)
	}
	fmt.Printf("e2e: %d/%d steps hold\n", passed, total)
	if failed {
		return 1
	}
	return 0
}

// envDuration is the duration in the environment variable name, or def when it is unset. A value
// that does not parse is reported and exits 2, like a bad flag.
func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %s=%q is not a duration (e.g. 5s): %v\n", name, v, err)
		os.Exit(2)
	}
	return d
}

// waitNoLeftovers gives exiting processes (the provider plugin notices its engine is gone) a
// moment, then names any that remain and kills them so the next run starts clean.
func waitNoLeftovers(bin string, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		found, err := localcluster.Leftovers(bin)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if len(found) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			_ = localcluster.KillLeftovers(bin)
			return fmt.Errorf("%w after %s (now killed): %v", localcluster.ErrLeftovers, grace, found)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
