package main

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/ops/preflight"
)

// TestPreflightCoversStack: every azure-native resource type (and invoke) each stack uses maps to
// a resource provider namespace that `make preflight` checks, so adding a resource of a new
// provider without its namespace fails here; and every namespace the preflight checks is needed
// by some stack, so it never asks anyone to register a provider the stack does not use.
func TestPreflightCoversStack(t *testing.T) {
	used := map[string]bool{}
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			m := runStack(t, stack, loadStackConfig(t, stack)).mocks
			var tokens []string
			for _, r := range m.Resources() {
				tokens = append(tokens, r.Type)
			}
			for _, c := range m.Calls() {
				tokens = append(tokens, c.Token)
			}
			needed, err := preflight.NeededBy(tokens)
			require.NoError(t, err, "stack %s uses azure-native types whose resource provider the preflight does not check", stack)
			require.NotEmpty(t, needed, "stack %s: no azure-native resource recorded", stack)
			for ns := range needed {
				used[ns] = true
			}
		})
	}
	if t.Failed() {
		return
	}
	var unused []string
	for _, n := range preflight.Namespaces {
		if !used[n.Name] {
			unused = append(unused, n.Name+" ("+n.Why()+")")
		}
	}
	sort.Strings(unused)
	assert.Empty(t, unused, "namespaces the preflight checks that no stack needs: drop their types from ops/preflight's typeNamespaces")
}
