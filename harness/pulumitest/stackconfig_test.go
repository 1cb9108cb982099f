package pulumitest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testProject = `name: demo
runtime: go
config:
  size:
    type: integer
    description: How many.
    default: 3
  label:
    type: string
    description: A label.
    default: plain
`

func writeProject(t *testing.T, stacks map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte(testProject), 0o644))
	for name, body := range stacks {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi."+name+".yaml"), []byte(body), 0o644))
	}
	return dir
}

func TestStackNames(t *testing.T) {
	dir := writeProject(t, map[string]string{"prod": "config: {}\n", "dev": "config: {}\n"})
	got, err := StackNames(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"dev", "prod"}, got)

	_, err = StackNames(t.TempDir())
	assert.ErrorContains(t, err, "no Pulumi.<stack>.yaml files")
}

func TestLoadStackConfigAppliesDefaults(t *testing.T) {
	dir := writeProject(t, map[string]string{"dev": "config:\n  demo:size: 5\n"})
	cfg, err := LoadStackConfig(dir, "dev")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"demo:size": "5", "demo:label": "plain"}, cfg)
}

func TestLoadStackConfigErrors(t *testing.T) {
	cases := []struct {
		name, stack, body, want string
	}{
		{"undeclared key", "dev", "config:\n  demo:sise: 5\n", "sets demo:sise (did you mean \"size\"?), which Pulumi.yaml does not declare"},
		{"wrong type", "dev", "config:\n  demo:size: many\n", "does not match Pulumi.yaml"},
		{"secure value", "dev", "config:\n  demo:label:\n    secure: AAABAKo0aGFzaA==\n", "holds secret (secure:) values for demo:label"},
		{"missing stack", "qa", "config: {}\n", "Pulumi.qa.yaml does not exist (stacks: dev)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeProject(t, map[string]string{"dev": tc.body})
			_, err := LoadStackConfig(dir, tc.stack)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
