// Package checks holds the tests of the repository's own files rather than of a Go package: the
// GitHub workflows, the Dockerfile, the README and docs/. They run from the repository root (see
// TestMain), so the paths they read are the repository's.
package checks
