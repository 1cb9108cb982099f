// Command preflight checks, before the first `pulumi up` on a subscription, that the Azure
// resource providers the stack needs are registered there (ops/preflight), and prints the
// `az provider register` commands for those that are not, and with -stack whether the caller is
// among the stack's cluster admins. Credentials: storage.NewCredential (DefaultAzureCredential: az
// login, or the AZURE_* variables of a service principal or workload identity; in a GitHub Actions
// job, fresh OIDC assertions); it only reads (Microsoft.Resources/subscriptions/providers/read,
// which Reader has).
//
// Exit status: 0 every provider is registered; 1 some are not (the commands are printed); 2 the
// check could not run (no or bad subscription, no credentials, ARM refusing the caller, network,
// an answer that does not parse). With -json the very last line is the report as JSON.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/aks-edw/aks-edw/app/redact"
	"github.com/aks-edw/aks-edw/app/storage"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/ops/cliutil"
	"github.com/aks-edw/aks-edw/ops/preflight"
)

// envSubscription is the variable the Azure SDKs and azure-native read the subscription from.
const envSubscription = "AZURE_SUBSCRIPTION_ID"

// Time bounds.
const (
	azTimeout    = 30 * time.Second
	checkTimeout = 2 * time.Minute
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := deps{credential: func() (azcore.TokenCredential, error) { return storage.NewCredential(storage.CredentialOptions{}) }}
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr, d))
}

// deps are what tests replace: the credential, and where ARM and Microsoft Graph are.
type deps struct {
	credential func() (azcore.TokenCredential, error)
	// baseURL is ARM's endpoint ("" for the public cloud's).
	baseURL string
	// graphURL is Microsoft Graph's endpoint ("" for the public cloud's).
	graphURL string
	// client sends the requests (nil for the default).
	client *http.Client
}

const usageText = `usage: preflight [-subscription ID] [-stack NAME] [-json]

Checks that the Azure resource providers the stack needs are registered in the subscription
(a new subscription's first pulumi up otherwise fails with MissingSubscriptionRegistration) and
prints the az commands that register the missing ones. With -stack, also whether you are among
that stack's cluster admins (clusterAdmins in Pulumi.<stack>.yaml, or a member of one of its
groups, asked of Microsoft Graph): on an Entra-only cluster anyone else gets 403 on the
Kubernetes half of pulumi up.

Subscription: -subscription, else AZURE_SUBSCRIPTION_ID, else az's current one (az account show).
Credentials: DefaultAzureCredential (az login, or the AZURE_* variables of a service principal or
workload identity); reading providers needs Microsoft.Resources/subscriptions/providers/read
(Reader has it).

Exit status: 0 all registered (and you are an admin, or cannot be told); 1 some are not (the
commands are printed), or you are not among the stack's cluster admins; 2 the check could not run
(subscription, credentials, permissions, network, a stack file that does not load).

Flags:
`

// config is what the flags say.
type config struct {
	subscription string
	stack        string
	dir          string
	json         bool
}

// parseFlags reads the flags; help says -h was given.
func parseFlags(args []string, stderr io.Writer) (cfg config, help bool, err error) {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.subscription, "subscription", "", "the subscription id to check (default: $"+envSubscription+", else `az account show`)")
	fs.StringVar(&cfg.stack, "stack", "", "also check that you are among this stack's cluster admins (Pulumi.<stack>.yaml)")
	fs.StringVar(&cfg.dir, "dir", ".", "the directory holding Pulumi.yaml and the stack files (with -stack)")
	fs.BoolVar(&cfg.json, "json", false, "print the report as one JSON line, last")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usageText)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return cfg, true, nil
		}
		return cfg, false, fmt.Errorf("bad flags: %v (preflight -h lists them)", err)
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("bad flags: unexpected arguments %q (preflight -h lists them)", fs.Args())
	}
	return cfg, false, nil
}

// run is the whole program; it returns the exit status. env is the environment: az is looked up
// on its PATH and runs with it, and AZURE_SUBSCRIPTION_ID is read from it.
func run(ctx context.Context, args, env []string, stdout, stderr io.Writer, d deps) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "preflight: %s\n", redact.String(err.Error()))
		return preflight.ExitBadInput
	}
	cfg, help, err := parseFlags(args, stderr)
	if help {
		return preflight.ExitOK
	}
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	sub, from, err := subscription(ctx, cfg.subscription, env)
	if err != nil {
		return fail(err)
	}
	cred, err := d.credential()
	if err != nil {
		return fail(fmt.Errorf("no Azure credentials: %v", err))
	}
	fmt.Fprintf(stdout, "preflight: subscription %s (from %s)\n", sub, from)
	c := &preflight.Checker{Credential: cred, BaseURL: d.baseURL, Client: d.client, GraphURL: d.graphURL}
	rep, err := c.Check(ctx, sub, preflight.Namespaces)
	if err != nil {
		return fail(err)
	}
	if cfg.stack != "" {
		stackCfg, err := pulumitest.LoadStackConfig(cfg.dir, cfg.stack)
		if err != nil {
			return fail(fmt.Errorf("-stack: %w", err))
		}
		admins, err := preflight.ReadAdmins(cfg.stack, stackCfg)
		if err != nil {
			return fail(err)
		}
		check, err := c.CheckAdmins(ctx, admins)
		if err != nil {
			return fail(fmt.Errorf("checking the cluster admins of stack %s: %w", cfg.stack, err))
		}
		rep.Admins = &check
	}
	if err := rep.WriteText(stdout); err != nil {
		return fail(err)
	}
	if cfg.json {
		j, err := rep.JSON()
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, j)
	}
	return rep.ExitCode()
}

// subscription returns the subscription id to check and where it came from: the flag, else
// AZURE_SUBSCRIPTION_ID, else az's current subscription.
func subscription(ctx context.Context, flagValue string, env []string) (id, from string, err error) {
	getenv := cliutil.EnvLookup(env)
	if v := strings.TrimSpace(flagValue); v != "" {
		if err := preflight.ValidateSubscription(v); err != nil {
			return "", "", fmt.Errorf("-subscription: %v", err)
		}
		return v, "-subscription", nil
	}
	if v := strings.TrimSpace(getenv(envSubscription)); v != "" {
		if err := preflight.ValidateSubscription(v); err != nil {
			return "", "", fmt.Errorf("%s: %v (or pass -subscription ID)", envSubscription, err)
		}
		return v, envSubscription, nil
	}
	az, err := cliutil.LookPath("az", getenv("PATH"))
	if err != nil {
		return "", "", fmt.Errorf("no subscription: pass -subscription ID (or set %s, or install the az CLI and az login)", envSubscription)
	}
	ctx, cancel := context.WithTimeout(ctx, azTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, az, "account", "show", "--query", "id", "-o", "tsv")
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		said := cliutil.OneLine(errOut.String())
		if said == "" {
			said = err.Error()
		}
		return "", "", fmt.Errorf("no subscription: pass -subscription ID (or set %s); `az account show` failed: %s", envSubscription, said)
	}
	v := strings.TrimSpace(out.String())
	if err := preflight.ValidateSubscription(v); err != nil {
		return "", "", fmt.Errorf("no subscription: pass -subscription ID (or set %s); `az account show --query id -o tsv` printed %v", envSubscription, err)
	}
	return v, "az account show", nil
}
