package storage

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/fakeentra"
)

// Issue 23 item 1: in a GitHub Actions job the programs' credential asks GitHub for a fresh
// assertion whenever it needs an Entra token, so a token for a new resource, asked for long after
// the job's first assertion has expired (as `make verify` after a long `pulumi up`), is still
// given. What az does with azure/login's one assertion is refused with AADSTS700024.
func TestCredentialOutlivesGitHubsAssertion(t *testing.T) {
	entra, err := fakeentra.Start(fakeentra.Options{Dir: t.TempDir(), AssertionLifetime: time.Second, AccessTokenLifetime: time.Hour})
	require.NoError(t, err)
	t.Cleanup(entra.Stop)
	env := map[string]string{
		EnvActionsTokenURL: entra.GitHubTokenURL(), EnvActionsRequestToken: entra.RequestToken,
		"AZURE_CLIENT_ID": entra.ClientID, "AZURE_TENANT_ID": entra.TenantID, "AZURE_AUTHORITY_HOST": entra.AuthorityHost(),
	}
	cred, err := NewCredential(CredentialOptions{Getenv: func(k string) string { return env[k] }, Client: entra.Client(), DisableInstanceDiscovery: true})
	require.NoError(t, err)
	ctx := context.Background()

	// What az does: one assertion, taken at login.
	first, err := entra.Assertion()
	require.NoError(t, err)
	az, err := azidentity.NewClientAssertionCredential(entra.TenantID, entra.ClientID, func(context.Context) (string, error) { return first, nil },
		&azidentity.ClientAssertionCredentialOptions{ClientOptions: policy.ClientOptions{Transport: entra.Client(), Cloud: cloudOf(entra)}, DisableInstanceDiscovery: true})
	require.NoError(t, err)

	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://storage.azure.com/.default"}})
	require.NoError(t, err, "a token at once")
	assert.NotEmpty(t, tok.Token)
	time.Sleep(1500 * time.Millisecond) // every assertion issued so far has expired

	_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	require.NoError(t, err, "a token for a new resource after the first assertion expired")
	_, err = az.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	require.Error(t, err, "the login-time assertion has expired")
	assert.Contains(t, err.Error(), "AADSTS700024")

	c := entra.Counts()
	assert.Equal(t, 2, c.Tokens, "two tokens for the credential")
	assert.Equal(t, 1, c.Expired, "only az's request met an expired assertion")
	assert.Equal(t, 3, c.Assertions, "one per token the credential asked for, plus az's at login")
}

// Outside GitHub Actions (a pod, a laptop) it is DefaultAzureCredential.
func TestCredentialOutsideActionsIsTheDefault(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no Actions variables":  {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"},
		"no identity named":     {EnvActionsTokenURL: "https://x", EnvActionsRequestToken: "r"},
		"request token missing": {EnvActionsTokenURL: "https://x", "AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"},
	} {
		cred, err := NewCredential(CredentialOptions{Getenv: func(k string) string { return env[k] }})
		require.NoError(t, err, name)
		_, ok := cred.(*azidentity.DefaultAzureCredential)
		assert.True(t, ok, "%s: a %T", name, cred)
	}
}

// GitHub refusing the request token is an error that says what to check.
func TestGitHubIDTokenRefused(t *testing.T) {
	entra, err := fakeentra.Start(fakeentra.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(entra.Stop)
	_, err = GitHubIDToken(context.Background(), entra.Client(), entra.GitHubTokenURL(), "wrong")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.Contains(t, err.Error(), "id-token: write")
	tok, err := GitHubIDToken(context.Background(), entra.Client(), entra.GitHubTokenURL(), entra.RequestToken)
	require.NoError(t, err)
	assert.NotEmpty(t, tok)
}

// cloudOf is the cloud configuration whose Entra is the stand-in.
func cloudOf(e *fakeentra.Entra) cloud.Configuration {
	return cloud.Configuration{ActiveDirectoryAuthorityHost: e.AuthorityHost()}
}
