package preflight

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/aks-edw/aks-edw/ops/cliutil"
)

// An Entra-only cluster (localAccounts false) lets into its API only the principals that hold
// Azure Kubernetes Service RBAC Cluster Admin there: the stack's clusterAdmins, or with that key
// unset whoever runs `pulumi up`. Anyone else running `up` gets the Azure half done and then
// 403 (Forbidden) on the Kubernetes half. CheckAdmins says which it will be before they start.

// Verdicts of CheckAdmins.
const (
	// AdminNotApplicable: the stack has no Entra-only cluster (Container Apps, or local accounts).
	AdminNotApplicable = "not-applicable"
	// AdminUnset: clusterAdmins is unset; `up` makes the caller the admin, taking over the grant.
	AdminUnset = "unset"
	// AdminListed: the caller is one of clusterAdmins.
	AdminListed = "listed"
	// AdminMember: the caller is a member of one of clusterAdmins' groups.
	AdminMember = "member"
	// AdminNot: the caller is not an admin: the Kubernetes half of `up` would get 403.
	AdminNot = "not-an-admin"
	// AdminUnknown: the caller is not listed, and whether it is in one of the groups could not be
	// asked (Microsoft Graph refused or failed).
	AdminUnknown = "unknown"
)

// GraphScope is the scope of the token CheckAdmins asks Microsoft Graph with.
const GraphScope = "https://graph.microsoft.com/.default"

// DefaultGraphURL is Microsoft Graph in the public cloud.
const DefaultGraphURL = "https://graph.microsoft.com"

// Admins is what a stack's configuration says about its cluster's admins.
type Admins struct {
	// Stack is the stack's name.
	Stack string
	// EntraOnly is true for an AKS stack with localAccounts false.
	EntraOnly bool
	// ClusterAdmins are the configured principals (empty: the deployer).
	ClusterAdmins []Principal
}

// Principal is one entry of clusterAdmins.
type Principal struct {
	ObjectID string `json:"objectId"`
	Type     string `json:"type"`
}

// ReadAdmins reads the admins from a stack's configuration as the program sees it
// ("aks-edw:<key>" -> value, defaults applied: pulumitest.LoadStackConfig).
func ReadAdmins(stack string, cfg map[string]string) (Admins, error) {
	a := Admins{Stack: stack}
	platform := cfg["aks-edw:platform"]
	local, err := strconv.ParseBool(strings.TrimSpace(cfg["aks-edw:localAccounts"]))
	if err != nil {
		return a, fmt.Errorf("stack %s: aks-edw:localAccounts %q is not true or false", stack, cfg["aks-edw:localAccounts"])
	}
	a.EntraOnly = platform != "containerapps" && !local
	if raw := strings.TrimSpace(cfg["aks-edw:clusterAdmins"]); raw != "" {
		if err := json.Unmarshal([]byte(raw), &a.ClusterAdmins); err != nil {
			return a, fmt.Errorf("stack %s: aks-edw:clusterAdmins is not a JSON array of {objectId, type}: %v", stack, err)
		}
	}
	return a, nil
}

// AdminCheck is CheckAdmins' answer.
type AdminCheck struct {
	// Stack is the stack checked.
	Stack string `json:"stack"`
	// ObjectID is the caller's object id (the oid claim of its token).
	ObjectID string `json:"objectId,omitempty"`
	// Verdict is one of the Admin* constants.
	Verdict string `json:"verdict"`
	// Detail says it in a sentence, with what to do.
	Detail string `json:"detail"`
}

// Fails reports whether the verdict means the Kubernetes half of `up` would be refused.
func (c AdminCheck) Fails() bool { return c.Verdict == AdminNot }

// CheckAdmins says whether the caller (c.Credential) will be let into the stack's Entra-only
// cluster: listed in clusterAdmins, a member of one of its groups (asked of Microsoft Graph), or
// not. It never fails for a question it cannot ask: then the verdict is AdminUnknown.
func (c *Checker) CheckAdmins(ctx context.Context, a Admins) (AdminCheck, error) {
	out := AdminCheck{Stack: a.Stack}
	if !a.EntraOnly {
		out.Verdict = AdminNotApplicable
		out.Detail = "no Entra-only cluster in this stack (Container Apps, or localAccounts true): nothing to check"
		return out, nil
	}
	if c.Credential == nil {
		return out, errors.New("no Azure credential")
	}
	tok, err := c.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
	if err != nil {
		return out, fmt.Errorf("no Azure token for %s: %s", Scope, cliutil.OneLine(err.Error()))
	}
	claims, err := tokenClaims(tok.Token)
	if err != nil {
		return out, fmt.Errorf("reading who you are from your token: %w", err)
	}
	out.ObjectID = claims.OID
	if len(a.ClusterAdmins) == 0 {
		out.Verdict = AdminUnset
		out.Detail = fmt.Sprintf("clusterAdmins is unset in Pulumi.%s.yaml: `pulumi up` grants Azure Kubernetes Service RBAC Cluster Admin to "+
			"you (%s) and takes it from whoever deployed this stack before you; when CI or a colleague also deploys it, each run "+
			"locks the other out until its own grant propagates. Set clusterAdmins to the people's group and the pipeline's service "+
			"principal (docs/deploy.md, \"Who is cluster admin\")", a.Stack, claims.OID)
		return out, nil
	}
	var groups []string
	for _, p := range a.ClusterAdmins {
		if strings.EqualFold(p.ObjectID, claims.OID) {
			out.Verdict = AdminListed
			out.Detail = fmt.Sprintf("you (%s) are in clusterAdmins as a %s", claims.OID, p.Type)
			return out, nil
		}
		if p.Type == "Group" {
			groups = append(groups, p.ObjectID)
		}
	}
	notAdmin := fmt.Sprintf("you (%s) are not in clusterAdmins of stack %s", claims.OID, a.Stack)
	refused := ": `pulumi up` would create the Azure resources and then get 403 (Forbidden) from the cluster's API server on every " +
		"Kubernetes object. Add your object id (or a group of yours) to clusterAdmins and let an admin run `up` once, or deploy as one of them"
	if len(groups) == 0 {
		out.Verdict = AdminNot
		out.Detail = notAdmin + ", which lists no group" + refused
		return out, nil
	}
	member, err := c.memberOf(ctx, claims, groups)
	if err != nil {
		out.Verdict = AdminUnknown
		out.Detail = fmt.Sprintf("%s, and whether you are in one of its groups (%s) could not be asked of Microsoft Graph (%s): "+
			"if you are not, the Kubernetes half of `pulumi up` gets 403 (Forbidden)", notAdmin, strings.Join(groups, ", "), cliutil.OneLine(err.Error()))
		return out, nil
	}
	if len(member) > 0 {
		out.Verdict = AdminMember
		out.Detail = fmt.Sprintf("you (%s) are a member of clusterAdmins' group %s", claims.OID, strings.Join(member, ", "))
		return out, nil
	}
	out.Verdict = AdminNot
	out.Detail = notAdmin + " nor a member of its groups (" + strings.Join(groups, ", ") + ")" + refused
	return out, nil
}

// claims are what CheckAdmins reads from an Entra access token.
type claims struct {
	// OID is the caller's object id.
	OID string `json:"oid"`
	// IDType is "app" for an application (service principal) token, "user" (or absent) else.
	IDType string `json:"idtyp"`
	// Scopes is set on delegated (user) tokens only.
	Scopes string `json:"scp"`
}

// app reports whether the token is an application's (a service principal, a managed identity).
func (c claims) app() bool { return c.IDType == "app" || (c.IDType == "" && c.Scopes == "") }

// tokenClaims decodes the payload of a JWT access token (without checking its signature: it
// only says who the caller is, to the caller).
func tokenClaims(token string) (claims, error) {
	var c claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, fmt.Errorf("the access token's payload is not base64url: %w", err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("the access token's payload is not JSON: %w", err)
	}
	if c.OID == "" {
		return c, errors.New("the access token has no oid claim")
	}
	return c, nil
}

// memberOf asks Microsoft Graph which of groups (transitively) contain the caller: checkMemberGroups
// on /me for a user (User.Read suffices), on /servicePrincipals/{oid} for an application (which
// needs GroupMember.Read.All, often not granted: then an error).
func (c *Checker) memberOf(ctx context.Context, who claims, groups []string) ([]string, error) {
	tok, err := c.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{GraphScope}})
	if err != nil {
		return nil, fmt.Errorf("no token for Microsoft Graph: %w", err)
	}
	base := strings.TrimRight(c.GraphURL, "/")
	if base == "" {
		base = DefaultGraphURL
	}
	url := base + "/v1.0/me/checkMemberGroups"
	if who.app() {
		url = base + "/v1.0/servicePrincipals/" + who.OID + "/checkMemberGroups"
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	var found []string
	for start := 0; start < len(groups); start += 20 { // Graph takes at most 20 groups a request
		batch := groups[start:min(start+20, len(groups))]
		body, err := json.Marshal(map[string][]string{"groupIds": batch})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, snippet(answer))
		}
		var v struct {
			Value []string `json:"value"`
		}
		if err := json.Unmarshal(answer, &v); err != nil {
			return nil, fmt.Errorf("POST %s: the answer is not JSON: %w", url, err)
		}
		found = append(found, v.Value...)
	}
	return found, nil
}
