package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/aks-edw/aks-edw/components"
)

// An AKS cluster reports success before its add-ons have installed what they own: the KEDA
// add-on's CRDs and operator, and node autoprovisioning's Karpenter CRDs. The Kubernetes provider
// retries a custom resource whose kind is not served for only about a minute before failing
// (docs/cloud-notes.md), so the objects that need the add-ons wait for them explicitly.

// addonPath is one thing an add-on installs, as a GET path on the API server, or one thing the
// deployer must be allowed to do (Review).
type addonPath struct {
	// Path is the API server path that answers 200 once it exists.
	Path string
	// Review, when set, makes this a SelfSubjectAccessReview instead of a GET: the API server
	// must answer that the deployer is allowed to do it (Path is not used).
	Review *authorizationv1.ResourceAttributes
	// What names it in errors.
	What string
	// Resource, when set, must be listed in the group-version document at Path (a CRD's kind is
	// served once its resource appears in discovery).
	Resource string
	// Hint, when set, is added to the error's advice when this is missing (the base advice
	// names the KEDA add-on and node autoprovisioning).
	Hint string
}

// RequiredAddons are what the workload's objects always need from the cluster's add-ons.
var RequiredAddons = []addonPath{
	{Path: "/apis/keda.sh/v1alpha1", Resource: "scaledobjects", What: "KEDA's ScaledObject kind (keda.sh/v1alpha1 scaledobjects; the KEDA add-on)"},
	{Path: "/apis/keda.sh/v1alpha1", Resource: "scaledjobs", What: "KEDA's ScaledJob kind (keda.sh/v1alpha1 scaledjobs; the KEDA add-on)"},
	{Path: "/apis/keda.sh/v1alpha1", Resource: "triggerauthentications", What: "KEDA's TriggerAuthentication kind (keda.sh/v1alpha1; the KEDA add-on)"},
	{Path: "/apis/karpenter.sh/v1", Resource: "nodepools", What: "Karpenter's NodePool kind (karpenter.sh/v1 nodepools; node autoprovisioning)"},
	{Path: "/api/v1/namespaces/kube-system/serviceaccounts/" + components.KedaOperatorName, What: "the KEDA operator's service account (kube-system/" + components.KedaOperatorName + ")"},
	{Path: "/apis/apps/v1/namespaces/kube-system/deployments/" + components.KedaOperatorName, What: "the KEDA operator's Deployment (kube-system/" + components.KedaOperatorName + ")"},
}

// MetricsAddons are what the PodMonitors need (Args.ScrapeMetrics): the PodMonitor kind that
// Azure Monitor managed Prometheus (the ama-metrics add-on) installs.
var MetricsAddons = []addonPath{
	{
		Path: "/apis/azmonitoring.coreos.com/v1", Resource: "podmonitors",
		What: "Azure Monitor's PodMonitor kind (azmonitoring.coreos.com/v1 podmonitors; the managed Prometheus add-on)",
		Hint: "that managed Prometheus is enabled (the cluster's azureMonitorProfile.metrics)",
	},
}

// DeployerAccess are the writes `pulumi up` is about to make, as SelfSubjectAccessReviews: on
// an Entra-only cluster the API server refuses them until the deployer's Azure RBAC role has
// propagated (up to five minutes; docs/cloud-notes.md), and pulumi-kubernetes does not retry a
// 403, so no object is sent before the API server allows all of them. namespace is the
// consumer's.
func DeployerAccess(namespace string) []addonPath {
	review := func(what string, a authorizationv1.ResourceAttributes) addonPath {
		return addonPath{What: "the deployer's permission to " + what, Review: &a}
	}
	return []addonPath{
		review("create namespaces", authorizationv1.ResourceAttributes{Verb: "create", Resource: "namespaces"}),
		review("create Deployments in "+namespace, authorizationv1.ResourceAttributes{Verb: "create", Group: "apps", Resource: "deployments", Namespace: namespace}),
		review("create KEDA ScaledObjects in "+namespace, authorizationv1.ResourceAttributes{Verb: "create", Group: "keda.sh", Resource: "scaledobjects", Namespace: namespace}),
		review("create Karpenter NodePools", authorizationv1.ResourceAttributes{Verb: "create", Group: "karpenter.sh", Resource: "nodepools"}),
		review("patch the KEDA operator's Deployment (kube-system/"+components.KedaOperatorName+")",
			authorizationv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "kube-system", Name: components.KedaOperatorName}),
	}
}

// requiredAddons is what Deploy waits for: the deployer's access (not in a preview, which
// writes nothing), RequiredAddons, plus MetricsAddons when the stack scrapes metrics. A new
// slice each time, so callers cannot change the shared lists.
func requiredAddons(scrapeMetrics, preview bool, namespace string) []addonPath {
	var paths []addonPath
	if !preview {
		paths = append(paths, DeployerAccess(namespace)...)
	}
	paths = append(paths, RequiredAddons...)
	if scrapeMetrics {
		paths = append(paths, MetricsAddons...)
	}
	return paths
}

// AddonWait bounds the wait for the add-ons.
type AddonWait struct {
	// Timeout is how long to wait in all (default 15 minutes).
	Timeout time.Duration
	// Interval is the pause between polls (default 5 seconds).
	Interval time.Duration
	// Preview makes a refusal (401/403) final at once: a preview grants nothing, so waiting
	// for a role to propagate would only delay the error. Deploy sets it in a preview.
	Preview bool
}

func (w AddonWait) withDefaults() AddonWait {
	if w.Timeout <= 0 {
		w.Timeout = 15 * time.Minute
	}
	if w.Interval <= 0 {
		w.Interval = 5 * time.Second
	}
	return w
}

// WaitForAddons polls the API server the kubeconfig points at until every path is served, and
// returns an error naming what is still missing when the timeout passes or ctx ends.
func WaitForAddons(ctx context.Context, kubeconfig string, paths []addonPath, w AddonWait) error {
	w = w.withDefaults()
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kubeconfig))
	if err != nil {
		return fmt.Errorf("reading the cluster's kubeconfig: %w", err)
	}
	cfg.Timeout = 30 * time.Second
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("building a client for the cluster's API server: %w", err)
	}
	host := strings.TrimSuffix(cfg.Host, "/")
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	var missing []addonPath
	var lastErr error
	credentialFailures := 0
	for polled := false; ; polled = true {
		m, err := missingAddons(ctx, client, host, paths)
		if len(m) == 0 {
			return nil
		}
		var refused *refusedError
		if w.Preview && errors.As(err, &refused) {
			return fmt.Errorf("the cluster at %s refused the preview's credentials (%v). %s", host, err, previewRefusedAdvice)
		}
		// The kubeconfig's credential plugin (kubelogin) failing is not what waiting cures (an
		// expired GitHub assertion stays expired): give up after a few polls in a row.
		if err != nil && strings.Contains(err.Error(), "getting credentials") {
			if credentialFailures++; credentialFailures >= credentialAttempts {
				return fmt.Errorf("the cluster's kubeconfig could not get a token %d times in a row: %v. %s", credentialFailures, err, credentialAdvice)
			}
		} else {
			credentialFailures = 0
		}
		// What the last poll found, unless the deadline cut it short: then every request it had
		// left failed with "context deadline exceeded", and the poll before says more (what is
		// really missing, a 401).
		if ctx.Err() == nil || !polled {
			missing, lastErr = m, err
		}
		select {
		case <-ctx.Done():
			var whats []string
			advice := "Check that the KEDA add-on and node autoprovisioning are enabled"
			for _, p := range missing {
				whats = append(whats, p.What)
				if p.Hint != "" && !strings.Contains(advice, p.Hint) {
					advice += " and " + p.Hint
				}
			}
			msg := fmt.Sprintf("after %s the cluster at %s still does not serve: %s", w.Timeout, host, strings.Join(whats, "; "))
			if lastErr != nil {
				msg += fmt.Sprintf(" (last error: %v)", lastErr)
			}
			var refused *refusedError
			if errors.As(lastErr, &refused) {
				advice = refusedAdvice
			}
			return errors.New(msg + ". " + advice + ", then run `pulumi up` again")
		case <-time.After(w.Interval):
		}
	}
}

// missingAddons returns what of paths is not served yet, and the last transport error.
func missingAddons(ctx context.Context, client *http.Client, host string, paths []addonPath) ([]addonPath, error) {
	var missing []addonPath
	var lastErr error
	docs := map[string][]byte{}
	for _, p := range paths {
		if p.Review != nil {
			if err := review(ctx, client, host, *p.Review); err != nil {
				lastErr = err
				missing = append(missing, p)
			}
			continue
		}
		body, ok := docs[p.Path]
		if !ok {
			var err error
			body, err = get(ctx, client, host+p.Path)
			if err != nil {
				lastErr = err
			}
			docs[p.Path] = body
		}
		if body == nil || (p.Resource != "" && !lists(body, p.Resource)) {
			missing = append(missing, p)
		}
	}
	return missing, lastErr
}

// lists reports whether a discovery document (APIResourceList) lists the resource.
func lists(doc []byte, resource string) bool {
	var list metav1.APIResourceList
	if json.Unmarshal(doc, &list) != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true
		}
	}
	return false
}

// get returns the body of a 200 answer, nil for anything else (404 while not installed yet).
func get(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusNotFound:
		return nil, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, &refusedError{url: url, status: resp.Status}
	default:
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
}

// review asks the API server whether the deployer may do what attrs describe (a
// SelfSubjectAccessReview, which any authenticated user may create): nil when allowed, a
// *refusedError when not (or when the review itself is refused).
func review(ctx context.Context, client *http.Client, host string, attrs authorizationv1.ResourceAttributes) error {
	body, err := json.Marshal(authorizationv1.SelfSubjectAccessReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"},
		Spec:     authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
	})
	if err != nil {
		return err
	}
	url := host + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
	case http.StatusUnauthorized, http.StatusForbidden:
		return &refusedError{url: url, status: resp.Status}
	default:
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	var r authorizationv1.SelfSubjectAccessReview
	if err := json.Unmarshal(answer, &r); err != nil {
		return fmt.Errorf("POST %s: decoding the review: %w", url, err)
	}
	if !r.Status.Allowed {
		what := attrs.Verb + " " + attrs.Resource
		if attrs.Namespace != "" {
			what += " in " + attrs.Namespace
		}
		reason := r.Status.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return &refusedError{url: url, status: fmt.Sprintf("not allowed to %s (%s)", what, reason)}
	}
	return nil
}

// refusedError is a 401 or 403 from the API server: with Entra ID and Azure RBAC for Kubernetes,
// what a new role assignment gives until it has propagated (up to about five minutes), so the
// wait keeps polling, and says so if the deadline passes.
type refusedError struct{ url, status string }

func (e *refusedError) Error() string { return fmt.Sprintf("%s: %s", e.url, e.status) }

// refusedAdvice is what the wait adds when the API server still refused it at the deadline.
const refusedAdvice = "The API server refused the deployer until the end: with Entra ID (localAccounts false) the identity " +
	"running `pulumi up` needs \"Azure Kubernetes Service RBAC Cluster Admin\" on the cluster, which the stack grants to the " +
	"principals in clusterAdmins (with clusterAdmins unset, to whoever runs `pulumi up`); check that this identity is one of them " +
	"or a member of one of those groups (`make preflight` says). A new role assignment can take up to five minutes to " +
	"propagate, and kubelogin must be able to sign in (AAD_LOGIN_METHOD)"

// credentialAttempts is how many polls in a row may fail to get a token before the wait gives up.
const credentialAttempts = 3

// credentialAdvice is the error's advice when the kubeconfig's credential plugin keeps failing.
const credentialAdvice = "The kubeconfig of an Entra-only cluster runs kubelogin, whose own message is on the program's " +
	"standard error. In a GitHub Actions job, run it with AAD_LOGIN_METHOD=workloadidentity, AZURE_CLIENT_ID and AZURE_TENANT_ID " +
	"and the job's `permissions: id-token: write`: it then asks GitHub for a fresh assertion each time; azurecli reuses " +
	"azure/login's, which expires after 5 minutes (AADSTS700024; docs/cloud-notes.md, \"Tokens in CI\"). On a workstation, `az login`"

// previewRefusedAdvice is the error's advice when a preview is refused.
const previewRefusedAdvice = "On an Entra-only cluster (localAccounts false) a preview reads the stack's Kubernetes objects, " +
	"KEDA's and Karpenter's among them, so the identity running it needs read access to all of them on the cluster besides " +
	"\"Azure Kubernetes Service Cluster User Role\": a custom role with the data action " +
	"Microsoft.ContainerService/managedClusters/*/read, or one of the clusterAdmins (docs/ci.md, \"Continuous delivery\"). A new " +
	"role assignment can take up to five minutes to propagate"

// addonsReady is an output that resolves once the deployer may write what the stack deploys
// and the cluster serves the add-ons (paths, requiredAddons of the args); every Kubernetes
// object takes it with pulumi.DependsOnInputs, so none is registered before it (and it is
// skipped while the kubeconfig is unknown, in a preview of a new cluster).
func addonsReady(ctx *pulumi.Context, kubeconfig pulumi.StringOutput, paths []addonPath, w AddonWait) pulumi.ResourceArrayOutput {
	return kubeconfig.ApplyTWithContext(ctx.Context(), func(c context.Context, kc string) ([]pulumi.Resource, error) {
		if err := WaitForAddons(c, kc, paths, w); err != nil {
			return nil, fmt.Errorf("waiting for the deployer's access and the cluster's add-ons: %w", err)
		}
		return nil, nil
	}).(pulumi.ResourceArrayOutput)
}
