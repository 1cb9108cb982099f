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
	assert.Contains(t, errb.String(), "dev, prod")
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
	require.Equal(t, 0, run([]string{"-stack", "dev", "-dir", "../..", "-markdown", "-o", path}, &out, &errb), errb.String())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "# Offline plan: the dev stack\n"))
	assert.Contains(t, string(b), "pulumi:pulumi:Stack  aks-edw-dev")
	assert.Empty(t, out.String(), "nothing on stdout when writing a file")
}
