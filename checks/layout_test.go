package checks

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/aks-edw/aks-edw"

// tier places a package of this module: the stack's floors bottom up (shared helpers, the
// workload's code, components, infra and workload, their composition, the program), or tooling
// (operators' tools, harnesses, commands, e2e, these checks), which sits beside them.
func tier(pkg string) (floor int, tooling bool) {
	p := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	first, _, _ := strings.Cut(p, "/")
	switch first {
	case "internal":
		return 0, false
	case "app":
		return 1, false
	case "components":
		return 2, false
	case "infra", "workload":
		return 3, false
	case "stack":
		return 4, false
	case "":
		return 5, false
	}
	return -1, true
}

// layoutProblems names every import that runs against the layout: a floor importing a floor above
// it or beside it (but for packages of one group, as app/observability imports app/consumer), or
// anything of the stack or the workload importing tooling, or tooling importing the program.
func layoutProblems(imports map[string][]string) []string {
	var problems []string
	for pkg, deps := range imports {
		floor, tooling := tier(pkg)
		for _, dep := range deps {
			if dep != module && !strings.HasPrefix(dep, module+"/") {
				continue
			}
			dfloor, dtooling := tier(dep)
			first := func(p string) string {
				f, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(p, module), "/"), "/")
				return f
			}
			switch {
			case tooling && dep == module:
				problems = append(problems, pkg+" imports the program")
			case tooling:
			case dtooling:
				problems = append(problems, pkg+" imports tooling "+dep)
			case dfloor > floor || (dfloor == floor && first(pkg) != first(dep)):
				problems = append(problems, pkg+" imports "+dep+", a floor above it or beside it")
			}
		}
	}
	return problems
}

// The import graph runs one way: program -> stack -> infra, workload -> components -> app ->
// internal (shared helpers), and the tooling beside it; nothing points back up.
func TestImportsRunOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[f[0]] = f[1:]
	}
	require.Contains(t, imports, module+"/app/consumer", "go list ran in the repository")
	assert.Empty(t, layoutProblems(imports))

	// The rule catches what it is for.
	bad := map[string][]string{
		module + "/app/consumer": {module + "/ops/verify"},
		module + "/components":   {module + "/infra"},
		module + "/infra":        {module + "/workload"},
		module + "/cmd/plan":     {module},
		module + "/app/storage":  {module + "/internal/suggest", module + "/app/message"},
	}
	assert.ElementsMatch(t, []string{
		module + "/app/consumer imports tooling " + module + "/ops/verify",
		module + "/components imports " + module + "/infra, a floor above it or beside it",
		module + "/infra imports " + module + "/workload, a floor above it or beside it",
		module + "/cmd/plan imports the program",
	}, layoutProblems(bad))
}
