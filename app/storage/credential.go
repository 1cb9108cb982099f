package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// The GitHub Actions variables of a job with `permissions: id-token: write`: where, and with what
// bearer token, the job asks GitHub for an OIDC ID token.
const (
	EnvActionsTokenURL     = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvActionsRequestToken = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
)

// exchangeAudience is the audience Entra ID expects of a federated credential's assertion.
const exchangeAudience = "api://AzureADTokenExchange"

// CredentialOptions tune NewCredential; the zero value is what the programs use.
type CredentialOptions struct {
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// Client sends the requests to GitHub and Entra ID (default http.DefaultClient).
	Client *http.Client
	// DisableInstanceDiscovery skips Entra's instance discovery (for a stand-in Entra in tests).
	DisableInstanceDiscovery bool
}

// NewCredential returns the credential the programs sign in to Azure with:
//   - in a GitHub Actions job that may ask for OIDC tokens (ACTIONS_ID_TOKEN_REQUEST_URL and
//     ACTIONS_ID_TOKEN_REQUEST_TOKEN) and names its identity (AZURE_CLIENT_ID, AZURE_TENANT_ID): a
//     client-assertion credential that asks GitHub for a fresh ID token each time it needs an
//     Entra token. azure/login hands az one ID token, which lives 5 minutes, and az cannot get a
//     token for a new resource once it has expired (AADSTS700024; docs/cloud-notes.md, "Tokens
//     in CI"); `make verify` runs after a deploy that takes far longer;
//   - everywhere else DefaultAzureCredential (workload identity in a pod, az login on a laptop).
func NewCredential(opts CredentialOptions) (azcore.TokenCredential, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	co := azcore.ClientOptions{}
	if opts.Client != nil {
		co.Transport = opts.Client
	}
	tokenURL, requestToken := getenv(EnvActionsTokenURL), getenv(EnvActionsRequestToken)
	clientID, tenantID := getenv("AZURE_CLIENT_ID"), getenv("AZURE_TENANT_ID")
	if tokenURL == "" || requestToken == "" || clientID == "" || tenantID == "" {
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: co, DisableInstanceDiscovery: opts.DisableInstanceDiscovery,
		})
	}
	if host := getenv("AZURE_AUTHORITY_HOST"); host != "" {
		co.Cloud.ActiveDirectoryAuthorityHost = host
	}
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	assertion := func(ctx context.Context) (string, error) {
		return GitHubIDToken(ctx, client, tokenURL, requestToken)
	}
	return azidentity.NewClientAssertionCredential(tenantID, clientID, assertion, &azidentity.ClientAssertionCredentialOptions{
		ClientOptions: co, DisableInstanceDiscovery: opts.DisableInstanceDiscovery,
	})
}

// GitHubIDToken asks GitHub Actions for an OIDC ID token with Entra's exchange audience.
func GitHubIDToken(ctx context.Context, client *http.Client, tokenURL, requestToken string) (string, error) {
	u, err := url.Parse(tokenURL)
	if err != nil {
		return "", fmt.Errorf("%s is not a URL: %w", EnvActionsTokenURL, err)
	}
	q := u.Query()
	q.Set("audience", exchangeAudience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+requestToken)
	req.Header.Set("Accept", "application/json; api-version=2.0")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking GitHub for an OIDC token: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("asking GitHub for an OIDC token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("asking GitHub for an OIDC token: %s (does the job have `permissions: id-token: write`?)", resp.Status)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", errors.New("asking GitHub for an OIDC token: the answer holds no token")
	}
	return v.Value, nil
}

// Scope is the Entra scope of Azure Storage's data plane.
const Scope = "https://storage.azure.com/.default"

// CredentialAdvice says how to give the programs Entra credentials.
const CredentialAdvice = "sign in with `az login`, or set the AZURE_* environment variables of a service principal or workload identity " +
	"(AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE); " +
	"AZURE_STORAGE_CONNECTION_STRING is only for Azurite and local runs"

// CheckCredential gets a storage token with NewCredential's credential within timeout, so that
// missing credentials are one clear error before anything else happens. The error says what to
// do; details is the credential chain's own account of what it tried (never a secret).
func CheckCredential(ctx context.Context, timeout time.Duration) (details string, err error) {
	cred, err := NewCredential(CredentialOptions{})
	if err != nil {
		return "", fmt.Errorf("no Azure credentials: %v; %s", err, CredentialAdvice)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}}); err != nil {
		return err.Error(), fmt.Errorf("no Azure credentials: none that can get a token for Azure Storage: %s", CredentialAdvice)
	}
	return "", nil
}
