package storage

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The emulator's documented account and endpoints, written out here so that
// a change to the constants in storage.go shows up as a failing test.
const (
	wantDevKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	wantDevCS  = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + wantDevKey +
		";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" +
		";TableEndpoint=http://127.0.0.1:10002/devstoreaccount1"
)

func TestExpandConnectionString(t *testing.T) {
	full := "DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
	cases := []struct {
		name, in, want, wantErr string
	}{
		{name: "shortcut", in: "UseDevelopmentStorage=true", want: wantDevCS},
		{name: "any case, trailing semicolon, spaces", in: " usedevelopmentstorage = TRUE ;", want: wantDevCS},
		{name: "full connection string unchanged", in: full, want: full},
		{name: "empty unchanged", in: "", want: ""},
		{name: "false is not a value", in: "UseDevelopmentStorage=false", wantErr: "the only valid value is true"},
		{name: "proxy rejected clearly", in: "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://myProxyUri", wantErr: "DevelopmentStorageProxyUri is not supported"},
		{name: "mixed with a full string", in: "UseDevelopmentStorage=true;AccountName=acct1;AccountKey=c2VjcmV0", wantErr: "cannot be combined with other keys (AccountName, AccountKey)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExpandConnectionString(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.NotContains(t, err.Error(), "c2VjcmV0", "an error never carries a key")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestLoadSettingsRejectsABadShortcut(t *testing.T) {
	env := map[string]string{EnvConnectionString: "UseDevelopmentStorage=yes", EnvQueueName: "work", EnvTableName: "records"}
	_, err := LoadSettings(func(k string) string { return env[k] }, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvConnectionString+": UseDevelopmentStorage: the only valid value is true")

	env[EnvConnectionString] = "UseDevelopmentStorage=true"
	s, err := LoadSettings(func(k string) string { return env[k] }, true)
	require.NoError(t, err)
	assert.Equal(t, "connection-string", s.Auth())
}

// recorder is an http.Client transport that records each request and fails
// it, so the clients can be inspected without a network.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return nil, errors.New("recorder: no network in this test")
}

func (r *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.reqs, "a request was attempted")
	return r.reqs[len(r.reqs)-1]
}

func TestNewClientsResolvesUseDevelopmentStorage(t *testing.T) {
	for _, cs := range []string{"UseDevelopmentStorage=true", "useDevelopmentStorage=true;"} {
		t.Run(cs, func(t *testing.T) {
			rec := &recorder{}
			c, err := NewClients(Settings{ConnectionString: cs, QueueName: "work", TableName: "records"}, &http.Client{Transport: rec})
			require.NoError(t, err)
			assert.Equal(t, "http://127.0.0.1:10001/devstoreaccount1/work", c.Queue.URL(), "queue endpoint")
			assert.Equal(t, "http://127.0.0.1:10001/devstoreaccount1/work-poison", c.Poison.URL(), "poison queue endpoint")

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = c.Queue.GetProperties(ctx, nil)
			require.Error(t, err)
			req := rec.last(t)
			assert.Equal(t, "127.0.0.1:10001", req.URL.Host, "queue endpoint")
			assert.Regexp(t, `^SharedKey devstoreaccount1:`, req.Header.Get("Authorization"), "queue requests signed as devstoreaccount1")

			require.NotNil(t, c.Table)
			_, err = c.Table.CreateTable(ctx, nil)
			require.Error(t, err)
			req = rec.last(t)
			assert.Equal(t, "127.0.0.1:10002", req.URL.Host, "table endpoint")
			assert.Equal(t, "/devstoreaccount1/Tables", req.URL.Path, "table account path")
			// Table requests use SharedKeyLite: HMAC-SHA256 over the date and
			// the resource, keyed with the account key. Recomputing it proves
			// the well-known key is the one in use.
			mac := hmac.New(sha256.New, mustBase64(t, wantDevKey))
			mac.Write([]byte(req.Header.Get("x-ms-date") + "\n/devstoreaccount1" + req.URL.EscapedPath()))
			assert.Equal(t, "SharedKeyLite devstoreaccount1:"+base64.StdEncoding.EncodeToString(mac.Sum(nil)), req.Header.Get("Authorization"),
				"table requests signed with devstoreaccount1's well-known key")
		})
	}
}

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

func TestNewClientsRejectsABadShortcut(t *testing.T) {
	_, err := NewClients(Settings{ConnectionString: "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://proxy", QueueName: "work"}, &http.Client{Transport: &recorder{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvConnectionString+": UseDevelopmentStorage=true: DevelopmentStorageProxyUri is not supported")
}

func TestDevConstantsAreTheDocumentedOnes(t *testing.T) {
	assert.Equal(t, "devstoreaccount1", DevAccountName)
	assert.Equal(t, wantDevKey, DevAccountKey)
	assert.Equal(t, wantDevCS, DevConnectionString)
}

// A SAS connection string's table requests go to its TableEndpoint (aztables alone would send
// them to <account>.table.core.windows.net), with the SAS in the query.
func TestSASConnectionStringUsesItsTableEndpoint(t *testing.T) {
	const cs = "AccountName=devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;" +
		"TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;SharedAccessSignature=sv=2023-01-03&ss=qt&sig=abc"
	rec := &recorder{}
	c, err := NewClients(Settings{QueueName: "work", TableName: "entities", ConnectionString: cs}, &http.Client{Transport: rec})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:10001/devstoreaccount1/work?sv=2023-01-03&ss=qt&sig=abc", c.Queue.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Table.CreateTable(ctx, nil)
	require.Error(t, err)
	req := rec.last(t)
	assert.Equal(t, "127.0.0.1:10002", req.URL.Host, "the connection string's table endpoint")
	assert.Equal(t, "/devstoreaccount1/Tables", req.URL.Path)
	assert.Equal(t, "abc", req.URL.Query().Get("sig"), "the SAS rides in the query")
	assert.Empty(t, req.Header.Get("Authorization"), "no shared key")
}
