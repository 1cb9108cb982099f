package preflight

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	me     = "0000000a-0000-4000-8000-00000000a11c"
	team   = "11111111-1111-4111-8111-111111111111"
	others = "22222222-2222-4222-8222-222222222222"
	cicd   = "0000000c-0000-4000-8000-0000000000c1"
)

// jwt is an unsigned token with the given claims (CheckAdmins reads, never verifies, them).
func jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	require.NoError(t, err)
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(b) + ".sig"
}

// fakeGraph plays Microsoft Graph's checkMemberGroups: the caller is a member of the groups in
// member; status, when set, is the answer to every request instead.
type fakeGraph struct {
	*httptest.Server
	member map[string]bool
	status int
	mu     sync.Mutex
	paths  []string
	sizes  []int
}

func newFakeGraph(t *testing.T, status int, member ...string) *fakeGraph {
	g := &fakeGraph{member: map[string]bool{}, status: status}
	for _, m := range member {
		g.member[m] = true
	}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			GroupIDs []string `json:"groupIds"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		g.mu.Lock()
		g.paths = append(g.paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		g.sizes = append(g.sizes, len(body.GroupIDs))
		g.mu.Unlock()
		if g.status != 0 {
			http.Error(w, `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}`, g.status)
			return
		}
		var in []string
		for _, id := range body.GroupIDs {
			if g.member[id] {
				in = append(in, id)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"value": in})
	}))
	t.Cleanup(g.Close)
	return g
}

func TestCheckAdmins(t *testing.T) {
	user := map[string]any{"oid": me, "scp": "user_impersonation", "idtyp": "user"}
	app := map[string]any{"oid": cicd, "idtyp": "app"}
	admins := func(ps ...Principal) Admins { return Admins{Stack: "dev", EntraOnly: true, ClusterAdmins: ps} }
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		admins  Admins
		graph   *fakeGraph
		verdict string
		detail  string
		asked   string // the Graph request, "" for none
	}{
		{name: "no Entra-only cluster", claims: user, admins: Admins{Stack: "dev-aca"}, verdict: AdminNotApplicable, detail: "nothing to check"},
		{name: "unset", claims: user, admins: admins(), verdict: AdminUnset, detail: "takes it from whoever deployed this stack before you"},
		{name: "listed, any case", claims: user, admins: admins(Principal{strings.ToUpper(me), "User"}), verdict: AdminListed, detail: "are in clusterAdmins as a User"},
		{name: "CI listed", claims: app, admins: admins(Principal{team, "Group"}, Principal{cicd, "ServicePrincipal"}), verdict: AdminListed},
		{name: "no group to be in", claims: user, admins: admins(Principal{cicd, "ServicePrincipal"}), verdict: AdminNot, detail: "get 403 (Forbidden)"},
		{name: "member of a group", claims: user, admins: admins(Principal{others, "Group"}, Principal{team, "Group"}),
			graph: newFakeGraph(t, 0, team), verdict: AdminMember, detail: "member of clusterAdmins' group " + team, asked: "POST /v1.0/me/checkMemberGroups"},
		{name: "in no group", claims: user, admins: admins(Principal{team, "Group"}), graph: newFakeGraph(t, 0, others),
			verdict: AdminNot, detail: "nor a member of its groups (" + team + ")", asked: "POST /v1.0/me/checkMemberGroups"},
		{name: "app, Graph refuses", claims: app, admins: admins(Principal{team, "Group"}), graph: newFakeGraph(t, http.StatusForbidden),
			verdict: AdminUnknown, detail: "could not be asked of Microsoft Graph", asked: "POST /v1.0/servicePrincipals/" + cicd + "/checkMemberGroups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := jwt(t, tc.claims)
			c := &Checker{Credential: &fakeCredential{token: token}}
			if tc.graph != nil {
				c.GraphURL = tc.graph.URL
			}
			got, err := c.CheckAdmins(context.Background(), tc.admins)
			require.NoError(t, err)
			assert.Equal(t, tc.verdict, got.Verdict, got.Detail)
			assert.Contains(t, got.Detail, tc.detail)
			assert.Equal(t, tc.verdict == AdminNot, got.Fails())
			if tc.graph != nil {
				require.Len(t, tc.graph.paths, 1)
				assert.Equal(t, tc.asked+" Bearer "+token, tc.graph.paths[0])
			}
		})
	}
}

// Graph takes at most 20 groups a request: 45 groups are asked in three.
func TestCheckAdminsAsksInBatchesOf20(t *testing.T) {
	var ps []Principal
	for i := range 45 {
		ps = append(ps, Principal{strings.Replace(team, "1111111", string(rune('a'+i%26))+"111111", 1), "Group"})
	}
	g := newFakeGraph(t, 0, ps[44].ObjectID)
	c := &Checker{Credential: &fakeCredential{token: jwt(t, map[string]any{"oid": me, "scp": "x"})}, GraphURL: g.URL}
	got, err := c.CheckAdmins(context.Background(), Admins{Stack: "prod", EntraOnly: true, ClusterAdmins: ps})
	require.NoError(t, err)
	assert.Equal(t, AdminMember, got.Verdict)
	assert.Equal(t, []int{20, 20, 5}, g.sizes)
}

func TestCheckAdminsErrors(t *testing.T) {
	a := Admins{Stack: "dev", EntraOnly: true}
	for token, want := range map[string]string{
		"not-a-jwt":      "not a JWT",
		"a.!!!.c":        "not base64url",
		jwt(t, nil):      "no oid claim",
		jwt(t, nil)[:10]: "not a JWT",
	} {
		_, err := (&Checker{Credential: &fakeCredential{token: token}}).CheckAdmins(context.Background(), a)
		require.Error(t, err, token)
		assert.Contains(t, err.Error(), want)
	}
}

func TestReadAdmins(t *testing.T) {
	a, err := ReadAdmins("prod", map[string]string{"aks-edw:platform": "aks", "aks-edw:localAccounts": "false",
		"aks-edw:clusterAdmins": `[{"objectId":"` + team + `","type":"Group"}]`})
	require.NoError(t, err)
	assert.True(t, a.EntraOnly)
	assert.Equal(t, []Principal{{team, "Group"}}, a.ClusterAdmins)

	a, err = ReadAdmins("dev-aca", map[string]string{"aks-edw:platform": "containerapps", "aks-edw:localAccounts": "false", "aks-edw:clusterAdmins": "[]"})
	require.NoError(t, err)
	assert.False(t, a.EntraOnly, "Container Apps has no cluster")
	a, err = ReadAdmins("x", map[string]string{"aks-edw:platform": "aks", "aks-edw:localAccounts": "true"})
	require.NoError(t, err)
	assert.False(t, a.EntraOnly, "local accounts")

	_, err = ReadAdmins("x", map[string]string{"aks-edw:localAccounts": "maybe"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "aks-edw:localAccounts")
	_, err = ReadAdmins("x", map[string]string{"aks-edw:localAccounts": "false", "aks-edw:clusterAdmins": "{"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "aks-edw:clusterAdmins")
}
