// Command verify is the user's "does it work" after `pulumi up` (SPEC §10): it reads the stack's
// outputs with the pulumi CLI, connects to the stack's storage (Entra credentials through
// storage.NewCredential: DefaultAzureCredential, or in a GitHub Actions job a fresh GitHub OIDC
// assertion per token; AZURE_STORAGE_CONNECTION_STRING instead, for Azurite and local runs)
// and cluster (the stack's kubeconfig output), sends a tagged burst and runs the checks of
// ops/verify, printing a line per check. Exit status: 0 every check holds; 1 a check
// failed (the last text line names it); 2 verify could not run (bad flags, unknown stack,
// missing outputs, no credentials, storage refusing the caller, cluster unreachable). With -json
// the very last line is the report as JSON (verify.Report).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/aks-edw/aks-edw/app/redact"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/ops/cliutil"
	"github.com/aks-edw/aks-edw/ops/redrive"
	"github.com/aks-edw/aks-edw/ops/verify"
)

// Exit statuses.
const (
	exitOK       = 0
	exitFailed   = 1
	exitBadInput = 2
)

// Stack outputs verify reads; consumerWorkload is an object (verify.Workload), the others
// strings. kubeconfig is a secret: never printed.
const (
	outStorageAccount = "storageAccountName"
	outQueue          = "queueName"
	outTable          = "tableName"
	outKubeconfig     = "kubeconfig"
	outWorkload       = "consumerWorkload"
)

// Time bounds of the set-up steps.
const (
	tokenTimeout   = time.Minute
	clusterTimeout = 15 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// badInput is an error that makes verify exit 2.
type badInput struct{ msg string }

func (e *badInput) Error() string { return e.msg }

func badInputf(format string, a ...any) error { return &badInput{msg: fmt.Sprintf(format, a...)} }

// config is what the flags say.
type config struct {
	stack, cwd string
	json       bool
	opts       verify.Options
}

const usageText = `usage: verify -stack NAME [flags]

Sends a tagged burst to the stack's queue and checks, with timings: the consumer at rest before,
scaled up within pollingInterval + slack, NAP nodes for its pods, every message stored exactly
once by its id, the queue drained, nothing poisoned, and back at rest after the cooldown. Deletes
the burst's entities afterwards.

Storage: DefaultAzureCredential (az login, or the AZURE_* variables of a service principal or
workload identity); in a GitHub Actions job with id-token: write and AZURE_CLIENT_ID and
AZURE_TENANT_ID set, a fresh GitHub OIDC token for every Entra token (az's expires after 5
minutes); AZURE_STORAGE_CONNECTION_STRING instead, for Azurite and local runs.
Cluster: the stack's kubeconfig output.

Exit status: 0 every check holds; 1 a check failed (the last line names it); 2 bad input
(flags, stack, outputs, credentials, storage access, cluster).

Flags:
`

// parseFlags reads the flags; a problem is a *badInput naming the flag. help says -h was given.
func parseFlags(args []string, stderr io.Writer) (cfg config, help bool, err error) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.stack, "stack", "", "the Pulumi stack to verify (required)")
	fs.StringVar(&cfg.cwd, "cwd", ".", "the Pulumi project folder (where Pulumi.yaml is)")
	fs.IntVar(&cfg.opts.Count, "count", verify.DefaultCount, fmt.Sprintf("messages in the burst (1-%d)", verify.MaxCount))
	fs.DurationVar(&cfg.opts.Slack, "slack", verify.DefaultSlack, "added to pollingInterval for scaled-up, and to cooldownPeriod + pollingInterval for back-to-minimum")
	fs.DurationVar(&cfg.opts.Timeout, "timeout", verify.DefaultTimeout, "how long after the burst's first message the scale-up, NAP nodes, the entities and the drain may take")
	fs.BoolVar(&cfg.opts.SkipScaleDown, "skip-scale-down", false, "do not wait for back-to-minimum (the line says skipped)")
	fs.BoolVar(&cfg.json, "json", false, "print the report as one JSON line, last")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usageText)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return cfg, true, nil
		}
		return cfg, false, badInputf("bad flags: %v (verify -h lists them)", err)
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if strings.TrimSpace(cfg.stack) == "" {
		problems = append(problems, "-stack is required (e.g. -stack dev)")
	}
	if st, err := os.Stat(cfg.cwd); err != nil || !st.IsDir() {
		problems = append(problems, fmt.Sprintf("-cwd %s: not a directory", cfg.cwd))
	}
	if err := cfg.opts.Validate(); err != nil {
		problems = append(problems, strings.Split(err.Error(), "\n")...)
	}
	if len(problems) > 0 {
		return cfg, false, badInputf("bad flags: %s", strings.Join(problems, "; "))
	}
	return cfg, false, nil
}

// run is the whole program; it returns the exit status. env is the environment: the pulumi CLI
// is looked up on its PATH and runs with it, and AZURE_STORAGE_CONNECTION_STRING is read from it
// (DefaultAzureCredential reads the process's own environment).
func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	cfg, help, err := parseFlags(args, stderr)
	if help {
		return exitOK
	}
	if err == nil {
		var in verify.Inputs
		in, err = setup(ctx, cfg, env)
		if err == nil {
			cfg.opts.Out = stdout
			var rep verify.Report
			rep, err = verify.Run(ctx, in, cfg.opts)
			if err == nil {
				// The poison queue's health, by reason (cmd/redrive shows and moves them).
				line := redrive.Summarize(ctx, in.Storage.Poison, in.QueueName)
				if !strings.HasSuffix(line, ": empty") && !strings.Contains(line, "not there yet") {
					line += fmt.Sprintf(" (details: make redrive STACK=%s)", cfg.stack)
				}
				fmt.Fprintln(stdout, redact.String(line))
				return finish(rep, cfg.json, stdout)
			}
		}
	}
	fmt.Fprintf(stderr, "verify: %s\n", redact.String(err.Error()))
	return exitBadInput
}

// finish prints the summary line (and the JSON report) and returns the exit status.
func finish(rep verify.Report, jsonOut bool, stdout io.Writer) int {
	fmt.Fprintln(stdout, rep.Summary())
	if jsonOut {
		j, err := rep.JSON()
		if err != nil {
			fmt.Fprintf(stdout, "verify: %v\n", err)
			return exitFailed
		}
		fmt.Fprintln(stdout, j)
	}
	if rep.OK() {
		return exitOK
	}
	return exitFailed
}

// setup reads the stack's outputs and builds the storage and cluster clients, checking on the
// way that the credentials work and the cluster answers.
func setup(ctx context.Context, cfg config, env []string) (verify.Inputs, error) {
	getenv := cliutil.EnvLookup(env)
	raw, err := cliutil.StackOutputs(ctx, cfg.stack, cfg.cwd, env)
	if err != nil {
		return verify.Inputs{}, badInputf("%v", err)
	}
	out, err := parseOutputs(cfg.stack, raw)
	if err != nil {
		return verify.Inputs{}, err
	}
	settings, err := storage.LoadSettings(func(name string) string {
		switch name {
		case storage.EnvAccountName:
			return out.account
		case storage.EnvQueueName:
			return out.queue
		case storage.EnvTableName:
			return out.table
		}
		return getenv(name)
	}, true)
	if err != nil {
		return verify.Inputs{}, badInputf("stack %s outputs or environment: %v", cfg.stack, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if settings.ConnectionString == "" {
		if err := checkCredential(ctx); err != nil {
			return verify.Inputs{}, err
		}
	}
	clients, err := storage.NewClients(settings, storage.NewHTTPClient(verify.DefaultConcurrency*2))
	if err != nil {
		return verify.Inputs{}, badInputf("storage clients: %v", err)
	}
	in := verify.Inputs{
		Stack: cfg.stack, Workload: out.workload,
		AccountName: out.account, QueueName: out.queue, TableName: out.table,
		Storage: clients,
	}
	if out.workload.OnContainerApps() {
		// No cluster: the app or job is read from Azure Resource Manager with the same credential.
		cred, err := storage.NewCredential(storage.CredentialOptions{})
		if err != nil {
			return verify.Inputs{}, badInputf("no Azure credentials: %v", err)
		}
		in.Platform = verify.ContainerAppsPlatform(verify.NewARMReader(cred, getenv(envARMEndpoint), nil), out.workload)
		return in, nil
	}
	in.Kube, in.Dynamic, err = connectCluster(out.kubeconfig)
	if err != nil {
		return verify.Inputs{}, err
	}
	return in, nil
}

// envARMEndpoint overrides Azure Resource Manager's endpoint (a sovereign cloud, or a test server).
const envARMEndpoint = "AZURE_RESOURCE_MANAGER_ENDPOINT"

// outputs are the stack outputs verify uses.
type outputs struct {
	account, queue, table, kubeconfig string
	workload                          verify.Workload
}

// parseOutputs reads the outputs verify needs from `pulumi stack output --json`, naming every
// missing one at once.
func parseOutputs(stack string, raw []byte) (outputs, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return outputs{}, badInputf("pulumi stack output --json for stack %s is not a JSON object: %v", stack, err)
	}
	var out outputs
	var missing, problems []string
	for key, dst := range map[string]*string{
		outStorageAccount: &out.account, outQueue: &out.queue, outTable: &out.table, outKubeconfig: &out.kubeconfig,
	} {
		v, ok := all[key]
		if !ok || string(v) == "null" {
			missing = append(missing, key)
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			problems = append(problems, fmt.Sprintf("output %s is not a string", key)) // never quote it: kubeconfig is a secret
			continue
		}
		if *dst == "" && key != outKubeconfig {
			missing = append(missing, key)
		}
	}
	if v, ok := all[outWorkload]; !ok || string(v) == "null" {
		missing = append(missing, outWorkload)
	} else if err := json.Unmarshal(v, &out.workload); err != nil {
		problems = append(problems, fmt.Sprintf("output %s is not an object of strings: %v", outWorkload, err))
	} else {
		missing = append(missing, out.workload.Missing()...)
		if err := out.workload.Validate(); err != nil && len(out.workload.Missing()) == 0 {
			problems = append(problems, err.Error())
		}
	}
	if out.kubeconfig == "" && !out.workload.OnContainerApps() && !slices.Contains(missing, outKubeconfig) {
		missing = append(missing, outKubeconfig) // AKS needs it; Container Apps exports it empty
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		problems = append([]string{fmt.Sprintf("stack %s lacks outputs verify needs: %s (deploy this version of the program: pulumi up --stack %s)",
			stack, strings.Join(missing, ", "), stack)}, problems...)
	}
	if len(problems) > 0 {
		return outputs{}, badInputf("%s", strings.Join(problems, "; "))
	}
	return out, nil
}

// checkCredential is storage.CheckCredential, as a *badInput with the details condensed.
func checkCredential(ctx context.Context) error {
	details, err := storage.CheckCredential(ctx, tokenTimeout)
	if err == nil {
		return nil
	}
	if details != "" {
		return badInputf("%v.\nDetails: %s", err, cliutil.Condense(details, 12))
	}
	return badInputf("%v", err)
}

// connectCluster builds the clients from the kubeconfig output and checks that the API server
// answers. Errors never quote the kubeconfig (it holds credentials).
func connectCluster(kubeconfig string) (kubernetes.Interface, dynamic.Interface, error) {
	rc, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	if err != nil {
		// The parser's message may quote part of the file: say where to look instead.
		return nil, nil, badInputf("stack output %s does not parse as a kubeconfig (look at it privately: pulumi stack output %s --show-secrets)", outKubeconfig, outKubeconfig)
	}
	rc.Timeout = clusterTimeout
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, badInputf("Kubernetes client for %s: %v", rc.Host, err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, badInputf("Kubernetes dynamic client for %s: %v", rc.Host, err)
	}
	if _, err := kube.Discovery().ServerVersion(); err != nil {
		if apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) {
			return nil, nil, badInputf("the cluster's API server %s refuses the stack's kubeconfig credentials: %v", rc.Host, err)
		}
		return nil, nil, badInputf("cluster unreachable: the API server %s (from the stack's kubeconfig) does not answer: %v", rc.Host, err)
	}
	return kube, dyn, nil
}
