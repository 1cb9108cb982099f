package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
)

// The output decodes strictly into client-go's own ExecCredential type with the token.
func TestPrintsAnExecCredential(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(f, []byte("s3cr3t\n"), 0o600))
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-token-file", f}, &out, &errOut), errOut.String())
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	var cred clientauthv1.ExecCredential
	require.NoError(t, dec.Decode(&cred))
	assert.Equal(t, "client.authentication.k8s.io/v1", cred.APIVersion)
	assert.Equal(t, "ExecCredential", cred.Kind)
	require.NotNil(t, cred.Status)
	assert.Equal(t, "s3cr3t", cred.Status.Token)
}

func TestRefusesAMissingOrEmptyToken(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for _, args := range [][]string{nil, {"-token-file", filepath.Join(t.TempDir(), "none")}, {"-token-file", empty}} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 1, run(args, &out, &errOut), args)
		assert.Empty(t, out.String(), "nothing on stdout for client-go to take as a credential")
		assert.Contains(t, errOut.String(), "execcredential:")
	}
}
