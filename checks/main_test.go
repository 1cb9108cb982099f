package checks

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the checks from the repository root.
func TestMain(m *testing.M) {
	if err := os.Chdir(".."); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cd to the repository root: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
