// Package fakeentra plays, on loopback, the two token services a GitHub Actions job uses to reach
// an Entra-only AKS cluster and Azure Storage, for the tests and the e2e.
package fakeentra

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Entra plays, on loopback, the two token services a GitHub Actions job uses to reach an
// Entra-only AKS cluster, so that the real kubelogin runs against them:
//   - GitHub's OIDC token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL): a short-lived ID token, the
//     "assertion", for the audience api://AzureADTokenExchange (GitHub's live 5 minutes);
//   - Microsoft Entra ID's tenant (its OpenID configuration, keys and v2.0 token endpoint): a
//     client-credentials grant with that assertion (a federated credential) returns an access
//     token for the scope asked; an assertion past its expiry is refused with AADSTS700024, as
//     Entra refuses it.
//
// The access tokens are JWTs signed with the tenant's key and issued by IssuerURL, so an API
// server started with OIDCFlags accepts them, as AKS's accepts Entra's: user <prefix><oid>.
type Entra struct {
	// URL is the server's base (https://127.0.0.1:port).
	URL string
	// TenantID and ClientID are the tenant and the federated application (the CI identity).
	TenantID, ClientID string
	// ObjectID is the application's service principal: the oid claim of its tokens.
	ObjectID string
	// CAFile is the PEM file of the CA the server's certificate chains to (SSL_CERT_FILE for
	// clients, --oidc-ca-file for the API server).
	CAFile string
	// RequestToken is what a job's ACTIONS_ID_TOKEN_REQUEST_TOKEN holds: the bearer token for
	// the GitHub endpoint.
	RequestToken string

	opts   Options
	srv    *httptest.Server
	key    *rsa.PrivateKey
	mu     sync.Mutex
	counts Counts
}

// Options tune StartEntra.
type Options struct {
	// Dir is where the CA file is written (required).
	Dir string
	// AssertionLifetime is how long GitHub's ID tokens are valid (default 5 minutes, GitHub's).
	AssertionLifetime time.Duration
	// AccessTokenLifetime is how long Entra's access tokens are valid (default 60 minutes, the
	// low end of Entra's 60-90).
	AccessTokenLifetime time.Duration
}

// Counts count what the services answered.
type Counts struct {
	// Assertions are the ID tokens GitHub's endpoint issued.
	Assertions int
	// Tokens are the access tokens Entra issued.
	Tokens int
	// Expired are the token requests refused because their assertion had expired (AADSTS700024).
	Expired int
	// Refused are the other refused token requests.
	Refused int
}

// AKSServerAppID is the application id of AKS's Entra server app, the audience of the tokens
// kubelogin asks for (--server-id).
const AKSServerAppID = "6dae42f8-4368-4678-94ff-3960e28e3630"

// AKSClientAppID is the application id of AKS's Entra client app (kubelogin's --client-id in the
// kubeconfigs AKS hands out).
const AKSClientAppID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"

// ExchangeAudience is the audience of the assertions Entra accepts from GitHub.
const ExchangeAudience = "api://AzureADTokenExchange"

// Start starts the services on a free loopback port with a fresh CA, key and identities.
func Start(opts Options) (*Entra, error) {
	if opts.Dir == "" {
		return nil, errors.New("fakeentra: Options.Dir is required")
	}
	if opts.AssertionLifetime <= 0 {
		opts.AssertionLifetime = 5 * time.Minute
	}
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = time.Hour
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 4)
	for i := range ids {
		if ids[i], err = randomGUID(); err != nil {
			return nil, err
		}
	}
	e := &Entra{TenantID: ids[0], ClientID: ids[1], ObjectID: ids[2], RequestToken: ids[3], opts: opts, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /github/idtoken", e.githubToken)
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", e.openIDConfiguration)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", e.keys)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", e.token)
	// httptest's TLS certificate is self-signed for 127.0.0.1 and may sign (IsCA): clients that
	// trust it as a root (SSL_CERT_FILE, --oidc-ca-file) trust the server.
	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.StartTLS()
	e.URL = e.srv.URL
	e.CAFile = filepath.Join(opts.Dir, "entra-ca.crt")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(e.CAFile, ca, 0o600); err != nil {
		e.srv.Close()
		return nil, err
	}
	return e, nil
}

// Client is an HTTP client that trusts the server.
func (e *Entra) Client() *http.Client { return e.srv.Client() }

// Stop shuts the server down.
func (e *Entra) Stop() { e.srv.Close() }

// IssuerURL is the tenant's issuer, the iss of its tokens (AKS: https://login.microsoftonline.com/<tenant>/v2.0).
func (e *Entra) IssuerURL() string { return e.URL + "/" + e.TenantID + "/v2.0" }

// AuthorityHost is what AZURE_AUTHORITY_HOST says for this Entra (with its trailing slash).
func (e *Entra) AuthorityHost() string { return e.URL + "/" }

// GitHubTokenURL is what a job's ACTIONS_ID_TOKEN_REQUEST_URL holds.
func (e *Entra) GitHubTokenURL() string { return e.URL + "/github/idtoken?api-version=2.0" }

// Username is the Kubernetes user an API server started with OIDCFlags(prefix) sees for the
// application's tokens.
func (e *Entra) Username(prefix string) string { return prefix + e.ObjectID }

// OIDCFlags are the kube-apiserver flags that make it accept this tenant's tokens for AKS's
// server app, as user prefix+oid.
func (e *Entra) OIDCFlags(prefix string) []string {
	return []string{
		"--oidc-issuer-url=" + e.IssuerURL(), "--oidc-client-id=" + AKSServerAppID, "--oidc-ca-file=" + e.CAFile,
		"--oidc-username-claim=oid", "--oidc-username-prefix=" + prefix, "--oidc-signing-algs=RS256",
	}
}

// Counts returns what the services have answered so far.
func (e *Entra) Counts() Counts {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts
}

// Assertion issues a GitHub ID token now, as azure/login gets one at the start of a job.
func (e *Entra) Assertion() (string, error) {
	now := time.Now()
	e.count(func(c *Counts) { c.Assertions++ })
	return e.sign(map[string]any{
		"iss": e.URL + "/github", "sub": "repo:your-org/aks-edw:environment:dev", "aud": ExchangeAudience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(e.opts.AssertionLifetime).Unix(),
	})
}

func (e *Entra) count(f func(*Counts)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.counts)
}

// githubToken is GitHub's ID token endpoint: GET with the job's request token as bearer.
func (e *Entra) githubToken(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Authorization"), "bearer "+e.RequestToken) {
		http.Error(w, `{"message":"bad request token"}`, http.StatusUnauthorized)
		return
	}
	if aud := r.URL.Query().Get("audience"); aud != ExchangeAudience {
		http.Error(w, fmt.Sprintf(`{"message":"audience %q is not %s"}`, aud, ExchangeAudience), http.StatusBadRequest)
		return
	}
	tok, err := e.Assertion()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": tok})
}

// openIDConfiguration is the tenant's discovery document: MSAL reads its token endpoint, the
// API server its issuer and keys.
func (e *Entra) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("tenant") != e.TenantID {
		http.Error(w, `{"error":"invalid_tenant"}`, http.StatusBadRequest)
		return
	}
	base := e.URL + "/" + e.TenantID
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                e.IssuerURL(),
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// keys is the tenant's JWKS.
func (e *Entra) keys(w http.ResponseWriter, _ *http.Request) {
	pub := e.key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "fake-entra-1",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// token is the v2.0 token endpoint for the client-credentials grant with a federated assertion.
func (e *Entra) token(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, code, description string, expired bool) {
		e.count(func(c *Counts) {
			if expired {
				c.Expired++
			} else {
				c.Refused++
			}
		})
		writeJSON(w, status, map[string]any{"error": code, "error_description": description, "error_codes": []int{}})
	}
	if err := r.ParseForm(); err != nil {
		refuse(http.StatusBadRequest, "invalid_request", "AADSTS900144: the request body is not a form", false)
		return
	}
	f := r.PostForm
	switch {
	case r.PathValue("tenant") != e.TenantID:
		refuse(http.StatusBadRequest, "invalid_request", "AADSTS90002: Tenant '"+r.PathValue("tenant")+"' not found.", false)
		return
	case f.Get("grant_type") != "client_credentials":
		refuse(http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: only client_credentials here", false)
		return
	case f.Get("client_id") != e.ClientID:
		refuse(http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application with identifier '"+f.Get("client_id")+"' was not found in the directory.", false)
		return
	case f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		refuse(http.StatusBadRequest, "invalid_client", "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.", false)
		return
	}
	claims, err := e.verify(f.Get("client_assertion"))
	if err != nil {
		refuse(http.StatusUnauthorized, "invalid_client", "AADSTS700211: No matching federated identity record found for presented assertion ("+err.Error()+").", false)
		return
	}
	if aud, _ := claims["aud"].(string); aud != ExchangeAudience {
		refuse(http.StatusUnauthorized, "invalid_client", "AADSTS700212: No matching federated identity record found for presented assertion audience '"+aud+"'.", false)
		return
	}
	exp, _ := claims["exp"].(float64)
	if now := time.Now(); now.Unix() >= int64(exp) {
		refuse(http.StatusUnauthorized, "invalid_client", fmt.Sprintf("AADSTS700024: Client assertion is not within its valid time range. Current time: %s, expiry time of assertion %s.",
			now.UTC().Format("2006-01-02T15:04:05Z"), time.Unix(int64(exp), 0).UTC().Format("2006-01-02T15:04:05Z")), true)
		return
	}
	scope := f.Get("scope")
	resource, ok := strings.CutSuffix(strings.Fields(scope + " ")[0], "/.default")
	if !ok || resource == "" {
		refuse(http.StatusBadRequest, "invalid_scope", "AADSTS1002012: The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", false)
		return
	}
	now := time.Now()
	life := e.opts.AccessTokenLifetime
	tok, err := e.sign(map[string]any{
		"iss": e.IssuerURL(), "aud": resource, "tid": e.TenantID, "oid": e.ObjectID, "sub": e.ObjectID,
		"appid": e.ClientID, "azp": e.ClientID, "idtyp": "app", "ver": "2.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
	})
	if err != nil {
		refuse(http.StatusInternalServerError, "server_error", err.Error(), false)
		return
	}
	e.count(func(c *Counts) { c.Tokens++ })
	secs := int(life / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok})
}

// sign makes an RS256 JWT of claims with the tenant's key.
func (e *Entra) sign(claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": "fake-entra-1"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, e.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// verify checks a JWT's RS256 signature with the tenant's key and returns its claims.
func (e *Entra) verify(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("signature not base64url")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&e.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return nil, errors.New("bad signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("payload not base64url")
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, errors.New("payload not JSON")
	}
	return claims, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// randomGUID is a random (version 4) GUID.
func randomGUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
