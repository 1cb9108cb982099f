package preflight

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testSub   = "11111111-2222-3333-4444-555555555555"
	testToken = "eyJ0eXAiOiJKV1QiLCJhbGciOi.s3cr3t-arm-token.sig"
)

// fakeCredential hands out testToken (or err) and records the scopes asked for.
type fakeCredential struct {
	token  string
	err    error
	mu     sync.Mutex
	scopes [][]string
}

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scopes = append(f.scopes, o.Scopes)
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: f.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// answer is what the fake ARM says for one namespace.
type answer struct {
	status int
	body   string
}

func registration(ns, state string) answer {
	return answer{http.StatusOK, fmt.Sprintf(`{"id":"/subscriptions/%s/providers/%s","namespace":%q,"registrationState":%q,"registrationPolicy":"RegistrationRequired","resourceTypes":[{"resourceType":"things","locations":["West Europe"]}]}`, testSub, ns, ns, state)}
}

// fakeARM plays Azure Resource Manager's Providers - Get. Namespaces not in answers are
// unknown (404 InvalidResourceNamespace, as ARM answers).
type fakeARM struct {
	*httptest.Server
	mu       sync.Mutex
	answers  map[string]answer
	requests []*http.Request
}

func newFakeARM(t *testing.T, answers map[string]answer) *fakeARM {
	t.Helper()
	f := &fakeARM{answers: answers}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Clone(context.Background()))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		prefix := "/subscriptions/" + testSub + "/providers/"
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, prefix) || r.URL.Query().Get("api-version") != APIVersion {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"code":"BadRequest","message":"unexpected %s %s"}}`, r.Method, r.URL)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"AuthenticationFailed","message":"Authentication failed. The 'Authorization' header is missing."}}`)
			return
		}
		ns := strings.TrimPrefix(r.URL.Path, prefix)
		a, ok := f.answers[ns]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"InvalidResourceNamespace","message":"The resource namespace '%s' is invalid."}}`, ns)
			return
		}
		w.WriteHeader(a.status)
		fmt.Fprint(w, a.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeARM) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, strings.TrimPrefix(r.URL.Path, "/subscriptions/"+testSub+"/providers/"))
	}
	return out
}

// allRegistered answers Registered for every namespace the stack needs.
func allRegistered() map[string]answer {
	m := map[string]answer{}
	for _, n := range Namespaces {
		m[n.Name] = registration(n.Name, StateRegistered)
	}
	return m
}

func check(t *testing.T, arm *fakeARM, cred azcore.TokenCredential, namespaces []Namespace) (Report, error) {
	t.Helper()
	c := &Checker{Credential: cred, BaseURL: arm.URL + "/", Client: arm.Client()}
	return c.Check(context.Background(), testSub, namespaces)
}

// output is everything the report prints, text and JSON.
func output(t *testing.T, rep Report) (text, js string) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, rep.WriteText(&b))
	js, err := rep.JSON()
	require.NoError(t, err)
	return b.String(), js
}

func TestCheckAllRegistered(t *testing.T) {
	arm := newFakeARM(t, allRegistered())
	cred := &fakeCredential{token: testToken}
	rep, err := check(t, arm, cred, Namespaces)
	require.NoError(t, err)

	assert.Equal(t, ExitOK, rep.ExitCode())
	assert.Empty(t, rep.Commands())
	assert.Len(t, rep.Providers, len(Namespaces))
	// The namespaces registered by default are not asked about; every other one is, once.
	var want []string
	for _, n := range Namespaces {
		if !n.RegisteredByDefault {
			want = append(want, n.Name)
		}
	}
	assert.Equal(t, want, arm.asked())
	assert.NotContains(t, arm.asked(), "Microsoft.Authorization")
	assert.NotContains(t, arm.asked(), "Microsoft.Resources")
	for _, r := range arm.requests {
		assert.Equal(t, "Bearer "+testToken, r.Header.Get("Authorization"), r.URL.Path)
	}
	assert.Equal(t, [][]string{{Scope}}, cred.scopes, "one token, for ARM")

	text, js := output(t, rep)
	assert.Contains(t, text, "All 12 are registered.")
	assert.Contains(t, text, "Microsoft.Resources")
	assert.Regexp(t, `Microsoft\.Resources +Registered by default \(not asked\) +resources:ResourceGroup\n`, text)
	assert.NotContains(t, text, "az provider")
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(js), &got))
	assert.Equal(t, float64(ExitOK), got["exitCode"])
	assert.Equal(t, []any{}, got["commands"])
	assert.NotContains(t, text+js, testToken)
}

func TestCheckNotRegistered(t *testing.T) {
	answers := allRegistered()
	answers["Microsoft.Monitor"] = registration("Microsoft.Monitor", "NotRegistered")
	answers["Microsoft.AlertsManagement"] = registration("Microsoft.AlertsManagement", "Registering")
	answers["Microsoft.Insights"] = registration("microsoft.insights", "Unregistered") // ARM's legacy spelling
	arm := newFakeARM(t, answers)
	rep, err := check(t, arm, &fakeCredential{token: testToken}, Namespaces)
	require.NoError(t, err)

	assert.Equal(t, ExitNotRegistered, rep.ExitCode())
	var names []string
	for _, s := range rep.NotRegistered() {
		names = append(names, s.Name)
	}
	assert.Equal(t, []string{"Microsoft.AlertsManagement", "Microsoft.Insights", "Microsoft.Monitor"}, names)
	assert.Equal(t, []string{
		"az provider register --namespace Microsoft.AlertsManagement --subscription " + testSub,
		"az provider register --namespace Microsoft.Insights --subscription " + testSub,
		"az provider register --namespace Microsoft.Monitor --subscription " + testSub,
		"az provider show -n Microsoft.AlertsManagement --subscription " + testSub + " --query registrationState -o tsv",
		"az provider show -n Microsoft.Insights --subscription " + testSub + " --query registrationState -o tsv",
		"az provider show -n Microsoft.Monitor --subscription " + testSub + " --query registrationState -o tsv",
	}, rep.Commands())

	text, js := output(t, rep)
	for _, c := range rep.Commands() {
		assert.Contains(t, text, "  "+c+"\n")
	}
	assert.Contains(t, text, "3 not registered (Microsoft.AlertsManagement, Microsoft.Insights, Microsoft.Monitor)")
	assert.Contains(t, text, "MissingSubscriptionRegistration")
	assert.Regexp(t, `Microsoft\.Monitor +NotRegistered <- register +monitor:AzureMonitorWorkspace\n`, text)
	assert.Regexp(t, `Microsoft\.AlertsManagement +Registering <- register +alertsmanagement:PrometheusRuleGroup\n`, text)
	assert.Regexp(t, `Microsoft\.ContainerService +Registered +containerservice:MaintenanceConfiguration, containerservice:ManagedCluster\n`, text)

	var got struct {
		Subscription string `json:"subscription"`
		Providers    []struct {
			Namespace string   `json:"namespace"`
			Types     []string `json:"types"`
			State     string   `json:"registrationState"`
			Default   bool     `json:"registeredByDefault"`
		} `json:"providers"`
		Commands []string `json:"commands"`
		ExitCode int      `json:"exitCode"`
	}
	require.NoError(t, json.Unmarshal([]byte(js), &got))
	assert.Equal(t, testSub, got.Subscription)
	assert.Equal(t, ExitNotRegistered, got.ExitCode)
	assert.Equal(t, rep.Commands(), got.Commands)
	require.Len(t, got.Providers, len(Namespaces))
	states := map[string]string{}
	for _, p := range got.Providers {
		states[p.Namespace] = p.State
		assert.NotEmpty(t, p.Types, p.Namespace)
	}
	assert.Equal(t, "NotRegistered", states["Microsoft.Monitor"])
	assert.Equal(t, "", states["Microsoft.Resources"], "registered by default: not asked")
	assert.NotContains(t, text+js, testToken)
}

func TestCheckFatalErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  answer
		want    []string
		checked int // namespaces ARM was asked about before giving up
	}{
		{
			name:   "403 AuthorizationFailed",
			answer: answer{http.StatusForbidden, `{"error":{"code":"AuthorizationFailed","message":"The client 'me@example.com' with object id 'aaaa' does not have authorization to perform action 'Microsoft.Resources/subscriptions/providers/read' over scope '/subscriptions/` + testSub + `'\nor the scope is invalid."}}`},
			want: []string{"Microsoft.AlertsManagement: ARM answered 403 AuthorizationFailed: The client 'me@example.com'",
				"; or the scope is invalid.", "needs Microsoft.Resources/subscriptions/providers/read", "Reader"},
			checked: 1,
		},
		{
			name:    "404 SubscriptionNotFound",
			answer:  answer{http.StatusNotFound, `{"error":{"code":"SubscriptionNotFound","message":"The subscription '` + testSub + `' could not be found."}}`},
			want:    []string{"ARM answered 404 SubscriptionNotFound", "az account list"},
			checked: 1,
		},
		{
			name:    "401 not JSON",
			answer:  answer{http.StatusUnauthorized, "<html>\n<body>denied</body>\n</html>"},
			want:    []string{"ARM answered 401: <html>; <body>denied</body>; </html>", "az login"},
			checked: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := allRegistered()
			answers["Microsoft.AlertsManagement"] = tc.answer // the first one asked
			arm := newFakeARM(t, answers)
			_, err := check(t, arm, &fakeCredential{token: testToken}, Namespaces)
			require.Error(t, err)
			var e *Error
			require.ErrorAs(t, err, &e)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n", "one line")
			assert.NotContains(t, err.Error(), testToken)
			assert.Len(t, arm.asked(), tc.checked, "stops at a failure that is not about one namespace")
		})
	}
}

func TestCheckNamespaceErrors(t *testing.T) {
	answers := allRegistered()
	answers["Microsoft.Monitor"] = answer{http.StatusOK, `{"namespace":"Microsoft.Monitor","registrationState":`} // cut short
	answers["Microsoft.Insights"] = answer{http.StatusOK, `{"namespace":"Microsoft.Insights"}`}
	answers["Microsoft.Storage"] = registration("Microsoft.Network", StateRegistered)
	answers["Microsoft.ManagedIdentity"] = registration("Microsoft.ManagedIdentity", "NotRegistered")
	arm := newFakeARM(t, answers)
	// Microsoft.Typo is unknown to ARM: 404 InvalidResourceNamespace.
	nss := append([]Namespace{{Name: "Microsoft.Typo", Types: []string{"azure-native:typo:Thing"}}}, Namespaces...)
	rep, err := check(t, arm, &fakeCredential{token: testToken}, nss)
	require.NoError(t, err, "errors about one namespace do not stop the others")
	assert.Len(t, arm.asked(), len(nss)-2, "every namespace but the two registered by default is asked")

	assert.Equal(t, ExitBadInput, rep.ExitCode(), "a failed question outranks a namespace not registered")
	errs := map[string]string{}
	for _, s := range rep.Failed() {
		errs[s.Name] = s.Error
	}
	assert.Len(t, errs, 4)
	assert.Contains(t, errs["Microsoft.Typo"], "Microsoft.Typo: ARM answered 404 InvalidResourceNamespace: The resource namespace 'Microsoft.Typo' is invalid.")
	assert.Contains(t, errs["Microsoft.Typo"], "ARM does not know this namespace")
	assert.Contains(t, errs["Microsoft.Monitor"], "the answer is not a provider as JSON")
	assert.Contains(t, errs["Microsoft.Insights"], "the answer has no registrationState")
	assert.Contains(t, errs["Microsoft.Storage"], `the answer is about namespace "Microsoft.Network"`)

	// The one not registered still gets its commands.
	assert.Equal(t, []string{
		"az provider register --namespace Microsoft.ManagedIdentity --subscription " + testSub,
		"az provider show -n Microsoft.ManagedIdentity --subscription " + testSub + " --query registrationState -o tsv",
	}, rep.Commands())
	text, js := output(t, rep)
	assert.Contains(t, text, "error: Microsoft.Typo: ARM answered 404")
	assert.Regexp(t, `Microsoft\.Monitor +ERROR +monitor:AzureMonitorWorkspace\n`, text)
	assert.NotContains(t, text, "All ")
	assert.Contains(t, js, `"exitCode":2`)
	assert.NotContains(t, text+js, testToken)
}

func TestCheckBadInput(t *testing.T) {
	arm := newFakeARM(t, allRegistered())
	t.Run("subscription", func(t *testing.T) {
		for _, sub := range []string{"", "  ", "my-subscription", testSub + "0", "/subscriptions/" + testSub} {
			c := &Checker{Credential: &fakeCredential{token: testToken}, BaseURL: arm.URL}
			_, err := c.Check(context.Background(), sub, Namespaces)
			require.Error(t, err, sub)
			assert.Contains(t, err.Error(), "subscription", sub)
		}
		assert.Empty(t, arm.asked())
	})
	t.Run("no credential", func(t *testing.T) {
		_, err := (&Checker{BaseURL: arm.URL}).Check(context.Background(), testSub, Namespaces)
		assert.EqualError(t, err, "no Azure credential")
	})
	t.Run("token error", func(t *testing.T) {
		cred := &fakeCredential{err: errors.New("DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n\tEnvironmentCredential: missing environment variable AZURE_TENANT_ID\n\tAzureCLICredential: Please run 'az login' to set up an account")}
		_, err := check(t, arm, cred, Namespaces)
		require.Error(t, err)
		assert.Equal(t, "no Azure token for https://management.azure.com/.default: DefaultAzureCredential: failed to acquire a token.; "+
			"Attempted credentials:; EnvironmentCredential: missing environment variable AZURE_TENANT_ID; "+
			"AzureCLICredential: Please run 'az login' to set up an account "+
			"(sign in with `az login`, or set the AZURE_* variables of a service principal or workload identity)", err.Error())
		assert.Empty(t, arm.asked())
	})
	t.Run("empty token", func(t *testing.T) {
		_, err := check(t, arm, &fakeCredential{token: ""}, Namespaces)
		assert.ErrorContains(t, err, "empty token")
	})
	t.Run("wrong token is refused", func(t *testing.T) {
		_, err := check(t, arm, &fakeCredential{token: "not-the-token"}, Namespaces)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "ARM answered 401 AuthenticationFailed")
		assert.NotContains(t, err.Error(), "not-the-token")
	})
	t.Run("base URL", func(t *testing.T) {
		c := &Checker{Credential: &fakeCredential{token: testToken}, BaseURL: "management.azure.com"}
		_, err := c.Check(context.Background(), testSub, Namespaces)
		assert.ErrorContains(t, err, "is not an absolute URL")
	})
}

func TestCheckNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there any more
	c := &Checker{Credential: &fakeCredential{token: testToken}, BaseURL: base}
	_, err := c.Check(context.Background(), testSub, Namespaces)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Microsoft.AlertsManagement: Get \""+base+"/subscriptions/"+testSub+"/providers/Microsoft.AlertsManagement?api-version=2021-04-01\"")
	assert.Contains(t, err.Error(), "network: is "+base+" reachable")
	assert.NotContains(t, err.Error(), testToken)
	assert.NotContains(t, err.Error(), "\n")
}

func TestCheckCancelled(t *testing.T) {
	arm := newFakeARM(t, allRegistered())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &Checker{Credential: &fakeCredential{token: testToken}, BaseURL: arm.URL}
	_, err := c.Check(ctx, testSub, Namespaces)
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, err.Error(), "network:", "a cancelled check is not a network problem")
}
