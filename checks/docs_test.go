package checks

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
