package checks

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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

// docs/cloud-notes.md pins each cloud behaviour with a test by name: every name it gives must be
// a test in this repository (a trailing * stands for a family of tests), so the notes cannot
// point at a test that was renamed or never written.
func TestCloudNotesNameRealTests(t *testing.T) {
	notes, err := os.ReadFile("docs/cloud-notes.md")
	require.NoError(t, err)
	var tests []string
	require.NoError(t, filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range regexp.MustCompile(`(?m)^func (Test\w+)\(`).FindAllStringSubmatch(string(src), -1) {
				tests = append(tests, m[1])
			}
		}
		return nil
	}))
	named := regexp.MustCompile("`(Test\\w+\\*?)`").FindAllStringSubmatch(string(notes), -1)
	require.NotEmpty(t, named, "the notes name their tests")
	for _, m := range named {
		name, family := strings.CutSuffix(m[1], "*")
		found := slices.ContainsFunc(tests, func(got string) bool {
			return got == name || (family && strings.HasPrefix(got, name))
		})
		assert.True(t, found, "docs/cloud-notes.md names %s, which is no test here", m[1])
	}
}
