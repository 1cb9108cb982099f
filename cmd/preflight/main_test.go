package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/ops/preflight"
)

const (
	sub   = "11111111-2222-3333-4444-555555555555"
	token = "s3cr3t-arm-token"
)

type fakeCredential struct{ err error }

func (f fakeCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// fakeARM answers Providers - Get: Registered unless states says otherwise; status, when not 0,
// is every answer's status (with an ARM error body). It records the subscriptions asked about.
type fakeARM struct {
	*httptest.Server
	mu   sync.Mutex
	subs []string
	auth []string
}

func newFakeARM(t *testing.T, states map[string]string, status int) *fakeARM {
	t.Helper()
	f := &fakeARM{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // subscriptions/{s}/providers/{ns}
		require.Len(t, parts, 4, r.URL.Path)
		f.mu.Lock()
		f.subs = append(f.subs, parts[1])
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			fmt.Fprint(w, `{"error":{"code":"AuthorizationFailed","message":"The client does not have authorization to perform action 'Microsoft.Resources/subscriptions/providers/read'."}}`)
			return
		}
		state := states[parts[3]]
		if state == "" {
			state = preflight.StateRegistered
		}
		fmt.Fprintf(w, `{"namespace":%q,"registrationState":%q}`, parts[3], state)
	}))
	t.Cleanup(f.Close)
	return f
}

// fakeAz writes an `az` script that records its arguments and prints stdout, or stderr and
// exits with code. It returns the directory, for PATH.
func fakeAz(t *testing.T, stdout, stderr string, code int) string {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" > %[1]s/args\nprintf '%%s\\n' %[2]s\nprintf '%%s\\n' %[3]s >&2\nexit %[4]d\n",
		shellQuote(dir), shellQuote(stdout), shellQuote(stderr), code)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "az"), []byte(script), 0o755))
	return dir
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func azArgs(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "args"))
	return strings.TrimSpace(string(b))
}

type result struct {
	code           int
	stdout, stderr string
}

func runWith(t *testing.T, args, env []string, arm *fakeARM, cred azcore.TokenCredential) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	d := deps{credential: func() (azcore.TokenCredential, error) { return cred, nil }}
	if arm != nil {
		d.baseURL, d.client = arm.URL, arm.Client()
	}
	code := run(context.Background(), args, env, &stdout, &stderr, d)
	r := result{code, stdout.String(), stderr.String()}
	assert.NotContains(t, r.stdout+r.stderr, token, "the token is never printed")
	return r
}

func TestAllRegistered(t *testing.T) {
	arm := newFakeARM(t, nil, 0)
	r := runWith(t, []string{"-subscription", sub}, []string{"PATH=/nonexistent"}, arm, fakeCredential{})
	assert.Equal(t, preflight.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "preflight: subscription "+sub+" (from -subscription)\n")
	assert.Contains(t, r.stdout, "All 12 are registered.")
	assert.Empty(t, r.stderr)
	for _, a := range arm.auth {
		assert.Equal(t, "Bearer "+token, a)
	}
	assert.Len(t, arm.subs, 10, "12 namespaces, 2 registered by default")
}

func TestNotRegisteredFromEnvJSON(t *testing.T) {
	arm := newFakeARM(t, map[string]string{"Microsoft.Monitor": "NotRegistered", "Microsoft.Insights": "Registering"}, 0)
	// The environment's subscription wins over az's (az is not even asked).
	azDir := fakeAz(t, "99999999-9999-9999-9999-999999999999", "", 0)
	r := runWith(t, []string{"-json"}, []string{"PATH=" + azDir, envSubscription + "=" + sub}, arm, fakeCredential{})
	assert.Equal(t, preflight.ExitNotRegistered, r.code, r.stderr)
	assert.Empty(t, azArgs(azDir))
	assert.Contains(t, r.stdout, "(from AZURE_SUBSCRIPTION_ID)")
	for _, c := range []string{
		"  az provider register --namespace Microsoft.Insights --subscription " + sub + "\n",
		"  az provider register --namespace Microsoft.Monitor --subscription " + sub + "\n",
		"  az provider show -n Microsoft.Insights --subscription " + sub + " --query registrationState -o tsv\n",
		"  az provider show -n Microsoft.Monitor --subscription " + sub + " --query registrationState -o tsv\n",
	} {
		assert.Contains(t, r.stdout, c)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var rep struct {
		Subscription string   `json:"subscription"`
		Commands     []string `json:"commands"`
		ExitCode     int      `json:"exitCode"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &rep), "the last line is the JSON report")
	assert.Equal(t, sub, rep.Subscription)
	assert.Equal(t, 1, rep.ExitCode)
	assert.Len(t, rep.Commands, 4)
}

func TestSubscriptionFromAz(t *testing.T) {
	arm := newFakeARM(t, nil, 0)
	azDir := fakeAz(t, sub, "", 0)
	r := runWith(t, nil, []string{"PATH=" + azDir}, arm, fakeCredential{})
	assert.Equal(t, preflight.ExitOK, r.code, r.stderr)
	assert.Equal(t, "account show --query id -o tsv", azArgs(azDir))
	assert.Contains(t, r.stdout, "(from az account show)")
	assert.Equal(t, sub, arm.subs[0])
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  func(t *testing.T) []string
		cred azcore.TokenCredential
		arm  int // status every ARM answer has (0: all registered)
		want string
	}{
		{
			name: "no subscription and no az",
			env:  func(*testing.T) []string { return []string{"PATH=" + t.TempDir()} },
			want: "preflight: no subscription: pass -subscription ID (or set AZURE_SUBSCRIPTION_ID, or install the az CLI and az login)\n",
		},
		{
			name: "az not signed in",
			env: func(t *testing.T) []string {
				return []string{"PATH=" + fakeAz(t, "", "ERROR: Please run 'az login' to setup account.", 1)}
			},
			want: "preflight: no subscription: pass -subscription ID (or set AZURE_SUBSCRIPTION_ID); `az account show` failed: ERROR: Please run 'az login' to setup account.\n",
		},
		{
			name: "az prints no id",
			env:  func(t *testing.T) []string { return []string{"PATH=" + fakeAz(t, "", "", 0)} },
			want: "printed no subscription id",
		},
		{
			name: "bad flag value",
			args: []string{"-subscription", "my-sub"},
			want: "preflight: -subscription: \"my-sub\" is not a subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)\n",
		},
		{
			name: "bad environment value",
			env:  func(*testing.T) []string { return []string{envSubscription + "=nope"} },
			want: "preflight: AZURE_SUBSCRIPTION_ID: \"nope\" is not a subscription id",
		},
		{
			name: "unknown flag",
			args: []string{"-region", "westus3"},
			want: "preflight: bad flags: flag provided but not defined: -region (preflight -h lists them)\n",
		},
		{
			name: "arguments",
			args: []string{"-subscription", sub, "extra"},
			want: "unexpected arguments [\"extra\"]",
		},
		{
			name: "no token",
			args: []string{"-subscription", sub},
			cred: fakeCredential{err: errors.New("DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n\tAzureCLICredential: Please run 'az login'")},
			want: "preflight: no Azure token for https://management.azure.com/.default: DefaultAzureCredential: failed to acquire a token.; Attempted credentials:; AzureCLICredential: Please run 'az login' (sign in",
		},
		{
			name: "403",
			args: []string{"-subscription", sub},
			arm:  http.StatusForbidden,
			want: "preflight: Microsoft.AlertsManagement: ARM answered 403 AuthorizationFailed: The client does not have authorization",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arm := newFakeARM(t, nil, tc.arm)
			env := []string{"PATH=" + t.TempDir()}
			if tc.env != nil {
				env = tc.env(t)
			}
			cred := tc.cred
			if cred == nil {
				cred = fakeCredential{}
			}
			r := runWith(t, tc.args, env, arm, cred)
			assert.Equal(t, preflight.ExitBadInput, r.code)
			assert.Contains(t, r.stderr, tc.want)
			assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		})
	}
}

func TestCredentialConstructionFails(t *testing.T) {
	var stdout, stderr bytes.Buffer
	d := deps{credential: func() (azcore.TokenCredential, error) { return nil, errors.New("boom") }}
	code := run(context.Background(), []string{"-subscription", sub}, nil, &stdout, &stderr, d)
	assert.Equal(t, preflight.ExitBadInput, code)
	assert.Equal(t, "preflight: no Azure credentials: boom\n", stderr.String())
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-h"}, nil, &stdout, &stderr, deps{})
	assert.Equal(t, preflight.ExitOK, code)
	assert.Contains(t, stderr.String(), "usage: preflight [-subscription ID] [-stack NAME] [-json]")
	assert.Contains(t, stderr.String(), "-subscription")
}

// jwtCredential hands out an unsigned JWT whose oid claim is oid (the admin check reads it).
type jwtCredential struct{ oid string }

func (c jwtCredential) token() string {
	payload, _ := json.Marshal(map[string]any{"oid": c.oid, "scp": "user_impersonation", "idtyp": "user"})
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(payload) + ".sig"
}

func (c jwtCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: c.token(), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// Issue 23 item 3: with -stack, preflight says whether the caller is among the stack's cluster
// admins before it runs `pulumi up`: unset (a warning: `up` takes the grant over), listed, or not
// (exit 1: the Kubernetes half would get 403).
func TestClusterAdminsOfAStack(t *testing.T) {
	const me, ci = "0000000a-0000-4000-8000-00000000a11c", "0000000c-0000-4000-8000-0000000000c1"
	arm := newFakeARM(t, nil, 0)
	cred := jwtCredential{oid: me}
	env := []string{"PATH=/nonexistent"}

	r := runWith(t, []string{"-subscription", sub, "-stack", "dev", "-dir", "../.."}, env, arm, cred)
	assert.Equal(t, preflight.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Cluster admins of stack dev: warning (unset): clusterAdmins is unset in Pulumi.dev.yaml: `pulumi up` grants "+
		"Azure Kubernetes Service RBAC Cluster Admin to you ("+me+") and takes it from whoever deployed this stack before you")

	dir := t.TempDir()
	project, err := os.ReadFile("../../Pulumi.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), project, 0o644))
	stack := func(name, admins string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi."+name+".yaml"), []byte("config:\n  aks-edw:clusterAdmins: "+admins+"\n"), 0o644))
	}
	stack("ci", `[{"objectId": "`+ci+`", "type": "ServicePrincipal"}]`)
	stack("team", `[{"objectId": "`+me+`", "type": "User"}]`)

	r = runWith(t, []string{"-subscription", sub, "-stack", "ci", "-dir", dir, "-json"}, env, arm, cred)
	assert.Equal(t, preflight.ExitNotRegistered, r.code, "not an admin: exit 1")
	assert.Contains(t, r.stdout, "Cluster admins of stack ci: NOT AN ADMIN (not-an-admin): you ("+me+") are not in clusterAdmins of stack ci")
	assert.Contains(t, r.stdout, "get 403 (Forbidden)")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var rep struct {
		Admins   preflight.AdminCheck `json:"clusterAdmins"`
		ExitCode int                  `json:"exitCode"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &rep))
	assert.Equal(t, preflight.AdminNot, rep.Admins.Verdict)
	assert.Equal(t, 1, rep.ExitCode)

	r = runWith(t, []string{"-subscription", sub, "-stack", "team", "-dir", dir}, env, arm, cred)
	assert.Equal(t, preflight.ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Cluster admins of stack team: ok (listed)")

	r = runWith(t, []string{"-subscription", sub, "-stack", "nope", "-dir", dir}, env, arm, cred)
	assert.Equal(t, preflight.ExitBadInput, r.code)
	assert.Contains(t, r.stderr, `preflight: -stack: stack "nope": `)
	assert.Contains(t, r.stderr, "(stacks: ci, team)")
	assert.NotContains(t, r.stdout+r.stderr, cred.token(), "the token is never printed")
}
