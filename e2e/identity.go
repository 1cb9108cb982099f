package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/aks-edw/aks-edw/harness/fakeentra"
)

// The deployer reaches the API server as CI reaches an Entra-only AKS cluster: the real kubelogin
// (built by tools.sh at the workflows' pin), in the workloadidentity mode with GitHub Actions'
// variables, asks the fake GitHub endpoint for an assertion and the fake Entra tenant for a token
// each time its token runs out; the API server accepts the tenant's tokens (OIDC) as user
// deployerPrefix+<object id>. That user has no role at first: the harness binds it to
// cluster-admin propagation after step 1's `pulumi up` starts, as Azure RBAC takes minutes to let
// a new role assignment in. The assertions live less than the setup takes, so a run that reached
// the API server with the setup's assertion would fail (E2E_BREAK=static-assertion).
const (
	// deployerPrefix is the API server's --oidc-username-prefix.
	deployerPrefix = "aad:"
	// assertionLifetime and tokenLifetime are short, so that kubelogin needs many fresh
	// assertions over one run (GitHub's live 5 minutes, Entra's tokens 60-90).
	assertionLifetime = 10 * time.Second
	tokenLifetime     = 30 * time.Second
	// propagation is how long the deployer's grant takes to let it in.
	propagation = 15 * time.Second
	// deployerBinding is the ClusterRoleBinding that plays the deployer's AKS RBAC Cluster Admin.
	deployerBinding = "e2e-deployer-aks-rbac-cluster-admin"
	// staticAssertion is the break that hands kubelogin one assertion fetched during the setup,
	// as az holds azure/login's.
	staticAssertion = "static-assertion"
)

// startEntra starts the fake GitHub token endpoint and Entra tenant.
func (r *runner) startEntra() error {
	var err error
	r.entra, err = fakeentra.Start(fakeentra.Options{Dir: filepath.Join(r.work, "entra"), AssertionLifetime: assertionLifetime, AccessTokenLifetime: tokenLifetime})
	return err
}

// deployerKubeconfig is the kubeconfig the stack's program (the Kubernetes provider and the
// add-on wait) and verify use: AKS's kubelogin kubeconfig for this API server, and kubelogin's
// environment as the workflows set it (AAD_LOGIN_METHOD=workloadidentity, the client and tenant,
// GitHub's token request variables). Besides pointing kubelogin at the fake Entra (its authority
// host, its CA, no instance discovery at login.microsoftonline.com), nothing differs from CI.
// With the static-assertion break, kubelogin gets a file with one assertion instead.
func (r *runner) deployerKubeconfig() (string, error) {
	env := map[string]string{
		"AAD_LOGIN_METHOD":     "workloadidentity",
		"AZURE_CLIENT_ID":      r.entra.ClientID,
		"AZURE_TENANT_ID":      r.entra.TenantID,
		"AZURE_AUTHORITY_HOST": r.entra.AuthorityHost(),
		"SSL_CERT_FILE":        r.entra.CAFile,
	}
	if r.brk == staticAssertion {
		a, err := r.entra.Assertion()
		if err != nil {
			return "", err
		}
		file := filepath.Join(r.work, "entra", "assertion")
		if err := os.WriteFile(file, []byte(a), 0o600); err != nil {
			return "", err
		}
		env["AZURE_FEDERATED_TOKEN_FILE"] = file
		r.staticExpiry = time.Now().Add(assertionLifetime)
	} else {
		env["ACTIONS_ID_TOKEN_REQUEST_URL"] = r.entra.GitHubTokenURL()
		env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = r.entra.RequestToken
	}
	return r.cluster.KubeloginKubeconfig(filepath.Join(r.bin, "kubelogin"), r.entra.TenantID, env, "--disable-instance-discovery"), nil
}

// deployer is the API server's user for the deployer's tokens.
func (r *runner) deployer() string { return r.entra.Username(deployerPrefix) }

// deployerMay asks the API server, as the deployer (impersonated by the admin), whether it may
// create namespaces.
func (r *runner) deployerMay(ctx context.Context) (bool, error) {
	cfg := rest.CopyConfig(r.cluster.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: r.deployer()}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	rev, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Resource: "namespaces"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return rev.Status.Allowed, nil
}

// grantAfter binds the deployer to cluster-admin after d, in the background; the returned
// channel yields when it was bound (or the error).
func (r *runner) grantAfter(ctx context.Context, d time.Duration) <-chan grant {
	done := make(chan grant, 1)
	go func() {
		select {
		case <-ctx.Done():
			done <- grant{err: ctx.Err()}
			return
		case <-time.After(d):
		}
		_, err := r.kube.cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: deployerBinding},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: r.deployer()}},
		}, metav1.CreateOptions{})
		done <- grant{at: time.Now(), err: err}
	}()
	return done
}

// grant is when the deployer's role was bound.
type grant struct {
	at  time.Time
	err error
}

// tokensEvidence says what kubelogin asked of the fake Entra so far.
func (r *runner) tokensEvidence() string {
	c := r.entra.Counts()
	return fmt.Sprintf("kubelogin signed in %d times through the fake Entra, each with a fresh GitHub assertion (%d issued; they expire after %s, tokens after %s), %d refused as expired",
		c.Tokens, c.Assertions, assertionLifetime, tokenLifetime, c.Expired)
}
