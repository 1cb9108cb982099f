package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const root = "../.."

// docs/configuration.md is what the code generates now: run `make docs` after changing a key,
// a default, a description or an output.
func TestConfigurationReferenceIsUpToDate(t *testing.T) {
	want, err := Configuration(root)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(root, File))
	require.NoError(t, err, "run make docs")
	assert.True(t, string(got) == want, "%s is out of date: run make docs", File)
}

// The reference follows Pulumi.yaml, and a key Pulumi.yaml and infra.Config do not both have is an
// error naming it.
func TestConfigurationFollowsPulumiYAML(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "Pulumi.yaml"))
	require.NoError(t, err)
	before, err := Configuration(root)
	require.NoError(t, err)

	dir := t.TempDir()
	changed := strings.Replace(string(raw), "description: Azure region of every resource.", "description: Azure region of every resource, changed.", 1)
	require.NotEqual(t, string(raw), changed)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte(changed), 0o644))
	after, err := Configuration(dir)
	require.NoError(t, err)
	assert.NotEqual(t, before, after)
	assert.Contains(t, after, "| `location` | string (`string`) | `westus3` | both | Azure region of every resource, changed. |")

	added := strings.Replace(string(raw), "\n  location:\n", "\n  region:\n    type: string\n    description: A key the typed config lacks.\n    default: x\n  location:\n", 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte(added), 0o644))
	_, err = Configuration(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `Pulumi.yaml declares "region", which infra.Config has no field for`)

	removed := strings.Replace(string(raw), "\n  location:\n    type: string\n", "\n  locationx:\n    type: string\n", 1)
	require.NotEqual(t, string(raw), removed)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte(removed), 0o644))
	_, err = Configuration(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `infra.Config field "location" is not declared in Pulumi.yaml`)
}
