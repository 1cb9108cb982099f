package cliutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvLookupLastValueWins(t *testing.T) {
	get := EnvLookup([]string{"A=1", "B=x=y", "A=2", "broken"})
	assert.Equal(t, "2", get("A"))
	assert.Equal(t, "x=y", get("B"))
	assert.Equal(t, "", get("broken"))
}

func TestLookPathFindsOnlyExecutableFiles(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(other, "tool"), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	got, err := LookPath("tool", dir+string(filepath.ListSeparator)+other)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(other, "tool"), got, "the first directory's file is not executable")
	_, err = LookPath("sub", dir)
	assert.ErrorIs(t, err, exec.ErrNotFound, "a directory is not a program")
}

func TestOneLine(t *testing.T) {
	assert.Equal(t, "ERROR: no subscription; run az login", OneLine("\n  ERROR: no subscription\n\n\trun az login\n"))
}
