package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/infra"
)

// The README documents every config key (with the default Pulumi.yaml declares) and every stack
// output, so it stays true when a key or an output is added, removed or changes its default.
func TestReadmeDocumentsEveryKeyAndOutput(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	proj, err := workspace.LoadProject("Pulumi.yaml")
	require.NoError(t, err)

	// Table rows: the first cell names one or more keys (`a`, `b`). Config rows go on with the
	// key's type; output rows with a description.
	typeCell := regexp.MustCompile(`^(string|integer|boolean|array|object) \| `)
	configRows, outputRows := map[string]string{}, map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| ((?:`[A-Za-z0-9]+`(?:, )?)+) \\| (.*)$").FindAllStringSubmatch(string(readme), -1) {
		for _, k := range regexp.MustCompile("`([A-Za-z0-9]+)`").FindAllStringSubmatch(m[1], -1) {
			if typeCell.MatchString(m[2]) {
				configRows[k[1]] = m[2]
			} else {
				outputRows[k[1]] = true
			}
		}
	}
	for key, decl := range proj.Config {
		row, ok := configRows[key]
		if assert.True(t, ok, "README config table has no row for %q", key) {
			assert.Regexp(t, "^"+regexp.QuoteMeta(decl.TypeName())+" \\| ", row, "README row for %q: type", key)
		}
	}
	for _, key := range infra.OutputKeys {
		assert.True(t, outputRows[key], "README outputs table has no row for %q", key)
	}
	// A removed key must leave the README too.
	for key := range configRows {
		_, declared := proj.Config[key]
		assert.True(t, declared, "README config table documents %q, which Pulumi.yaml does not declare", key)
	}
}
