package components

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

// runAzure runs fn under fresh mocks and fails the test on error.
func runAzure(t *testing.T, fn pulumi.RunFunc) *pulumitest.Mocks {
	t.Helper()
	m := pulumitest.New("aks-edw", "test")
	require.NoError(t, m.Run(nil, fn))
	return m
}

// requireChildrenParented checks every non-component resource has the component as parent.
func requireChildrenParented(t *testing.T, m *pulumitest.Mocks, componentType string) {
	t.Helper()
	comp := m.One(t, componentType)
	for _, r := range m.Resources() {
		if r.Custom && r.URN != comp.URN {
			require.Equal(t, comp.URN, r.Parent, "%s %s must be parented to the %s component", r.Type, r.Name, componentType)
		}
	}
}

// runAzureErr runs fn under fresh mocks and returns its error.
func runAzureErr(fn pulumi.RunFunc) error {
	return pulumitest.New("aks-edw", "test").Run(nil, fn)
}
