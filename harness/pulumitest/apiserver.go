package pulumitest

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
)

// The cluster's kubeconfig under the mocks points at a small fake Kubernetes API server on
// loopback that serves what an AKS cluster's add-ons install (KEDA's and Karpenter's kinds in
// discovery, the KEDA operator's service account and Deployment), so the program's real wait for
// the add-ons runs in every mock test and offline plan. It starts once per process.

// MockToken is the bearer token in the mock kubeconfig; the fake API server refuses any other.
const MockToken = "mock-token"

// AddonDiscovery is what the fake API server serves: path -> JSON body. Every other path is 404.
var AddonDiscovery = map[string]any{
	"/apis/keda.sh/v1alpha1": apiResourceList("keda.sh/v1alpha1", "scaledobjects", "scaledjobs", "triggerauthentications",
		"clustertriggerauthentications"),
	"/apis/karpenter.sh/v1": apiResourceList("karpenter.sh/v1", "nodepools", "nodeclaims"),
	// The managed Prometheus add-on's kinds (the stacks with managedPrometheus scrape through them).
	"/apis/azmonitoring.coreos.com/v1":                               apiResourceList("azmonitoring.coreos.com/v1", "podmonitors", "servicemonitors"),
	"/api/v1/namespaces/kube-system/serviceaccounts/keda-operator":   map[string]any{"kind": "ServiceAccount", "apiVersion": "v1", "metadata": map[string]any{"name": "keda-operator", "namespace": "kube-system"}},
	"/apis/apps/v1/namespaces/kube-system/deployments/keda-operator": map[string]any{"kind": "Deployment", "apiVersion": "apps/v1", "metadata": map[string]any{"name": "keda-operator", "namespace": "kube-system"}},
}

func apiResourceList(gv string, resources ...string) map[string]any {
	var rs []any
	for _, r := range resources {
		rs = append(rs, map[string]any{"name": r, "namespaced": r != "nodepools" && r != "nodeclaims" && r != "clustertriggerauthentications"})
	}
	return map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rs}
}

// SelfSubjectAccessReviewPath is where a client asks the API server what it may do.
const SelfSubjectAccessReviewPath = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

// DenyReview is the lookup key (SelfSubjectAccessReviewPath + "?" + verb + " " + resource) whose
// presence makes the fake API server answer that review "not allowed".
func DenyReview(verb, resource string) string {
	return SelfSubjectAccessReviewPath + "?" + verb + " " + resource
}

// answerReview answers a SelfSubjectAccessReview: allowed, unless lookup has DenyReview for it.
func answerReview(w http.ResponseWriter, r *http.Request, lookup func(path string) (any, bool)) {
	var review map[string]any
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, `{"kind":"Status","code":400}`, http.StatusBadRequest)
		return
	}
	attrs, _ := review["spec"].(map[string]any)["resourceAttributes"].(map[string]any)
	verb, _ := attrs["verb"].(string)
	resource, _ := attrs["resource"].(string)
	_, denied := lookup(DenyReview(verb, resource))
	status := map[string]any{"allowed": !denied}
	if denied {
		status["reason"] = "denied by the fake API server"
	}
	review["status"] = status
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(review)
}

// NewAPIServer starts a TLS API server on loopback that answers GETs from paths (JSON bodies)
// and SelfSubjectAccessReviews (allowed unless paths holds DenyReview for them) for requests
// carrying MockToken, and returns it with a kubeconfig for it. Close it when done.
func NewAPIServer(paths map[string]any) (*httptest.Server, string) {
	return NewAPIServerFunc(func(path string) (any, bool) {
		body, ok := paths[path]
		return body, ok
	})
}

// NewAPIServerFunc is NewAPIServer with the answers looked up per request (e.g. an add-on that
// appears after a while).
func NewAPIServerFunc(lookup func(path string) (any, bool)) (*httptest.Server, string) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+MockToken {
			http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == SelfSubjectAccessReviewPath {
			answerReview(w, r, lookup)
			return
		}
		body, ok := lookup(r.URL.Path)
		if !ok || r.Method != http.MethodGet {
			http.Error(w, `{"kind":"Status","code":404}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}))
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster: {server: %q, certificate-authority-data: %s}
  name: mock
contexts:
- context: {cluster: mock, user: mock}
  name: mock
current-context: mock
users:
- name: mock
  user: {token: %s}
`, srv.URL, base64.StdEncoding.EncodeToString(ca), MockToken)
	return srv, kubeconfig
}

var mockCluster struct {
	once       sync.Once
	kubeconfig string
}

// Kubeconfig is the kubeconfig listManagedClusterUserCredentials returns under the mocks: it
// points at the process's fake API server, which serves AddonDiscovery.
func Kubeconfig() string {
	mockCluster.once.Do(func() {
		_, mockCluster.kubeconfig = NewAPIServer(AddonDiscovery)
	})
	return mockCluster.kubeconfig
}
