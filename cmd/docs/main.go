// Command docs writes docs/configuration.md from Pulumi.yaml, infra.Config and infra.OutputDocs
// (ops/docs); `make docs` runs it from the repository root.
package main

import (
	"fmt"
	"os"

	"github.com/aks-edw/aks-edw/ops/docs"
)

func main() {
	if err := docs.Write("."); err != nil {
		fmt.Fprintf(os.Stderr, "docs: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("docs: wrote %s\n", docs.File)
}
