package preflight

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/aks-edw/aks-edw/ops/cliutil"
)

const (
	// DefaultBaseURL is Azure Resource Manager in the public cloud.
	DefaultBaseURL = "https://management.azure.com"
	// Scope is the Entra scope of Azure Resource Manager.
	Scope = "https://management.azure.com/.default"
	// APIVersion is the Resource Providers API version of the GET (Providers - Get).
	APIVersion = "2021-04-01"
	// StateRegistered is the registrationState of a namespace the subscription can use.
	StateRegistered = "Registered"
	// DefaultTimeout bounds one request.
	DefaultTimeout = 30 * time.Second
	// maxBody bounds what is read of an answer (a provider lists its resource types: tens of KB).
	maxBody = 8 << 20
)

// subscriptionRE is a subscription id: a GUID.
var subscriptionRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidateSubscription says whether id is a subscription id (a GUID), naming the problem.
func ValidateSubscription(id string) error {
	if strings.TrimSpace(id) == "" {
		return errors.New("no subscription id")
	}
	if !subscriptionRE.MatchString(id) {
		return fmt.Errorf("%q is not a subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)", id)
	}
	return nil
}

// Checker asks Azure Resource Manager for the registration state of resource providers.
type Checker struct {
	// Credential gets the ARM token (required; azidentity.NewDefaultAzureCredential in the CLI).
	Credential azcore.TokenCredential
	// BaseURL is ARM's endpoint (optional; default DefaultBaseURL; a test server in tests).
	BaseURL string
	// Client sends the requests (optional; default an http.Client with DefaultTimeout).
	Client *http.Client
	// GraphURL is Microsoft Graph's endpoint, for CheckAdmins (optional; default DefaultGraphURL).
	GraphURL string
}

// Status is one namespace's answer.
type Status struct {
	Namespace
	// State is ARM's registrationState ("Registered", "NotRegistered", "Registering",
	// "Unregistered", ...); "" when not asked (registered by default) or when the question failed.
	State string `json:"registrationState,omitempty"`
	// Error says why the question failed ("" when it did not).
	Error string `json:"error,omitempty"`
}

// Registered says whether the subscription can use the namespace.
func (s Status) Registered() bool { return s.RegisteredByDefault || s.State == StateRegistered }

// Error is a failed question to ARM, in one line. It never holds the token.
type Error struct {
	// Namespace is the namespace asked about ("" when the failure is not about one namespace).
	Namespace string
	// Status is the HTTP status (0 when no answer came).
	Status int
	// Code and Message are ARM's error code and message, when it sent them.
	Code, Message string
	// Advice says what to do.
	Advice string
	// Err is the underlying error (transport, decoding), if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Namespace != "" {
		b.WriteString(e.Namespace + ": ")
	}
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, "ARM answered %d", e.Status)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
		if e.Err != nil {
			b.WriteString(": " + e.Err.Error())
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	}
	if e.Advice != "" {
		b.WriteString(" (" + e.Advice + ")")
	}
	return cliutil.OneLine(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// fatal says the failure is not about one namespace (credentials, permissions, subscription,
// network): asking about the others would fail the same way.
func (e *Error) fatal() bool {
	switch {
	case e.Status == 0:
		return true
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return true
	case e.Status == http.StatusNotFound && e.Code == "SubscriptionNotFound":
		return true
	}
	return false
}

// Check asks ARM for the registration state of each namespace in subscription, in order. The
// namespaces Azure registers by default are not asked about. The error is non-nil when the check
// could not run (bad subscription id, no token, ARM refusing the caller, network): then the
// report holds what was learnt before. An error about a single namespace (unknown to ARM, an
// answer that does not parse) is in its Status instead, and the others are still asked.
func (c *Checker) Check(ctx context.Context, subscription string, namespaces []Namespace) (Report, error) {
	rep := Report{Subscription: subscription}
	if err := ValidateSubscription(subscription); err != nil {
		return rep, fmt.Errorf("subscription: %w", err)
	}
	if c.Credential == nil {
		return rep, errors.New("no Azure credential")
	}
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	base = strings.TrimRight(base, "/")
	if u, err := url.Parse(base); err != nil || u.Scheme == "" || u.Host == "" {
		return rep, fmt.Errorf("ARM base URL %q is not an absolute URL", base)
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	var token string
	for _, ns := range namespaces {
		st := Status{Namespace: ns}
		if ns.RegisteredByDefault {
			rep.Providers = append(rep.Providers, st)
			continue
		}
		if token == "" {
			tok, err := c.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
			if err != nil {
				return rep, fmt.Errorf("no Azure token for %s: %s (sign in with `az login`, or set the AZURE_* variables of a service principal or workload identity)",
					Scope, cliutil.OneLine(err.Error()))
			}
			if tok.Token == "" {
				return rep, fmt.Errorf("no Azure token for %s: the credential returned an empty token", Scope)
			}
			token = tok.Token
		}
		state, err := c.get(ctx, client, base, token, subscription, ns.Name)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.fatal() {
				return rep, e
			}
			st.Error = err.Error()
		} else {
			st.State = state
		}
		rep.Providers = append(rep.Providers, st)
	}
	return rep, nil
}

// armError is ARM's error body.
type armError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// provider is the part of ARM's Provider answer the check reads.
type provider struct {
	Namespace         string `json:"namespace"`
	RegistrationState string `json:"registrationState"`
}

// get asks for one namespace's registrationState.
func (c *Checker) get(ctx context.Context, client *http.Client, base, token, subscription, namespace string) (string, error) {
	u := fmt.Sprintf("%s/subscriptions/%s/providers/%s?api-version=%s",
		base, url.PathEscape(subscription), url.PathEscape(namespace), APIVersion)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", &Error{Namespace: namespace, Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error names the method and URL (no token: it is in a header).
		e := &Error{Namespace: namespace, Err: err}
		if ctx.Err() == nil {
			e.Advice = "network: is " + base + " reachable from here (proxy, firewall, DNS)?"
		}
		return "", e
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", &Error{Namespace: namespace, Err: fmt.Errorf("reading the answer: %w", err), Advice: "network"}
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Namespace: namespace, Status: resp.StatusCode}
		var ae armError
		if json.Unmarshal(body, &ae) == nil {
			e.Code, e.Message = ae.Error.Code, ae.Error.Message
		}
		if e.Code == "" && e.Message == "" {
			e.Message = snippet(body)
		}
		e.Advice = advice(e, subscription)
		return "", e
	}
	var p provider
	if err := json.Unmarshal(body, &p); err != nil {
		return "", &Error{Namespace: namespace, Status: resp.StatusCode, Err: fmt.Errorf("the answer is not a provider as JSON: %w", err)}
	}
	if p.RegistrationState == "" {
		return "", &Error{Namespace: namespace, Status: resp.StatusCode, Err: errors.New("the answer has no registrationState")}
	}
	if p.Namespace != "" && !strings.EqualFold(p.Namespace, namespace) {
		return "", &Error{Namespace: namespace, Status: resp.StatusCode, Err: fmt.Errorf("the answer is about namespace %q", p.Namespace)}
	}
	return p.RegistrationState, nil
}

// advice says what to do about an ARM error answer.
func advice(e *Error, subscription string) string {
	switch {
	case e.Status == http.StatusUnauthorized:
		return "the token was refused: sign in again (`az login`) or check the AZURE_* variables"
	case e.Status == http.StatusForbidden:
		return "the signed-in identity may not read resource providers in subscription " + subscription +
			": it needs Microsoft.Resources/subscriptions/providers/read there (Reader has it), or sign in as another identity"
	case e.Status == http.StatusNotFound && e.Code == "SubscriptionNotFound":
		return "check the subscription id and that the signed-in identity's tenant holds it (`az account list -o table`)"
	case e.Status == http.StatusNotFound:
		return "ARM does not know this namespace here: a typo in ops/preflight, or a cloud without it"
	case e.Status == http.StatusTooManyRequests || e.Status >= http.StatusInternalServerError:
		return "ARM is throttling or failing: try again in a minute"
	}
	return ""
}

// snippet is the start of a body that is not ARM's error JSON, in one line.
func snippet(body []byte) string {
	s := cliutil.OneLine(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
