package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnknownStackExits2ListingStacks(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"-stack", "qa", "-dir", "../.."}, &out, &errb)
	assert.Equal(t, 2, code)
	assert.Contains(t, errb.String(), `unknown stack "qa"`)
	assert.Contains(t, errb.String(), "dev, dev-aca, prod")
	assert.Empty(t, out.String())
}

func TestMissingStackExits2(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"-dir", "../.."}, &out, &errb))
	assert.Contains(t, errb.String(), "-stack is required")
}

func TestWritesPlanToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plan.md")
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"-stack", "dev", "-dir", "../..", "-markdown", "-o", path, "-config", repo}, &out, &errb), errb.String())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "# Offline plan: the dev stack\n"))
	assert.Contains(t, string(b), "pulumi:pulumi:Stack  aks-edw-dev")
	assert.Empty(t, out.String(), "nothing on stdout when writing a file")
}

// -config sets keys on top of the stack file, as `pulumi preview --config` would: the fork-PR
// plan shows the image built from the commit under review.
func TestConfigOverrides(t *testing.T) {
	const commit = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"-stack", "dev", "-dir", "../..", "-config", repo, "-config", "aks-edw:imageSourceRef=" + commit}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), "aqs-consumer:sha-4b825dc642cb")
	assert.NotContains(t, out.String(), "aqs-consumer:main")

	out.Reset()
	errb.Reset()
	assert.Equal(t, 1, run([]string{"-stack", "dev", "-dir", "../..", "-config", repo, "-config", "imageSourceReff=x"}, &out, &errb))
	assert.Contains(t, errb.String(), `aks-edw:imageSourceReff: is not a config key of this project (Pulumi.yaml declares every key); did you mean "imageSourceRef"?`)

	errb.Reset()
	assert.Equal(t, 2, run([]string{"-stack", "dev", "-dir", "../..", "-config", "noequals"}, &out, &errb))
	assert.Contains(t, errb.String(), `"noequals" is not key=value`)

	errb.Reset()
	assert.Equal(t, 1, run([]string{"-stack", "dev", "-dir", "../..", "-config", repo, "-config", "imageSourceRef=abc1234"}, &out, &errb))
	assert.Contains(t, errb.String(), "abbreviated commit", "the program's own validation still applies")

	// imageSourceRepository has no default: without it the plan fails naming it and image.
	errb.Reset()
	assert.Equal(t, 1, run([]string{"-stack", "dev", "-dir", "../.."}, &out, &errb))
	assert.Contains(t, errb.String(), "aks-edw:imageSourceRepository is required when image is empty")
	assert.Contains(t, errb.String(), "or set image to")
}

// repo sets the one key every deployment must set (as make plan does).
const repo = "imageSourceRepository=https://git.example.com/your-org/aks-edw.git"
