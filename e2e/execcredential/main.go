// Command execcredential is the client-go exec credential plugin `make e2e` puts in the
// kubeconfig the stack's program and `verify` use: it plays kubelogin for the local API server,
// printing a client.authentication.k8s.io/v1 ExecCredential with the bearer token read from
// -token-file. So the real Kubernetes provider reaches the cluster the way it reaches an
// Entra-only AKS cluster: through an exec plugin, never a token in the kubeconfig.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run prints the ExecCredential; 1 with a message on stderr when the token cannot be read.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("execcredential", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tokenFile := fs.String("token-file", "", "file holding the bearer token (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cred, err := credential(*tokenFile)
	if err != nil {
		fmt.Fprintln(stderr, "execcredential:", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(cred); err != nil {
		fmt.Fprintln(stderr, "execcredential:", err)
		return 1
	}
	return 0
}

// execCredential is client-go's ExecCredential (client.authentication.k8s.io/v1), the fields
// a plugin fills.
type execCredential struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     struct {
		Token string `json:"token"`
	} `json:"status"`
}

func credential(tokenFile string) (execCredential, error) {
	var c execCredential
	if tokenFile == "" {
		return c, errors.New("-token-file is required")
	}
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		return c, fmt.Errorf("reading the token: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return c, fmt.Errorf("%s holds no token", tokenFile)
	}
	c.APIVersion, c.Kind = "client.authentication.k8s.io/v1", "ExecCredential"
	c.Status.Token = token
	return c, nil
}
