package checks

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The stack builds the consumer image with an ACR task run (a quick build), and ACR quick builds
// run the classic Docker builder, not BuildKit (docs/cloud-notes.md: Azure/acr#721,
// Azure/acr-builder#449). These tests parse the Dockerfile with BuildKit's own parser and refuse
// every construct the classic builder rejects or silently mis-builds.

// buildKitOnlyArgs are the automatic platform arguments only BuildKit defines; under the classic
// builder they expand to "" unless the Dockerfile gives them a default.
var buildKitOnlyArgs = map[string]bool{
	"BUILDPLATFORM": true, "BUILDOS": true, "BUILDARCH": true, "BUILDVARIANT": true,
	"TARGETPLATFORM": true, "TARGETOS": true, "TARGETARCH": true, "TARGETVARIANT": true,
}

// classicCopyFlags are the only COPY/ADD flags the classic builder accepts (--chmod, --link,
// --parents, --exclude, --checksum, --keep-git-dir all need BuildKit).
var classicCopyFlags = map[string]bool{"from": true, "chown": true}

var varRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// classicBuilderProblems returns every construct in the Dockerfile that the classic builder does
// not support, each with its line.
func classicBuilderProblems(src []byte) ([]string, error) {
	var problems []string
	if name, _, _, ok := parser.DetectSyntax(src); ok {
		problems = append(problems, fmt.Sprintf("`# syntax=%s` selects a BuildKit frontend; the classic builder ignores it", name))
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("parsing the Dockerfile: %w", err)
	}
	// Variables with a value in the current scope: global ARGs with a default (before the first
	// FROM), then per stage ARG/ENV.
	globals := map[string]bool{}
	scope := map[string]bool{}
	seenFrom := false
	for _, n := range res.AST.Children {
		cmd := strings.ToUpper(n.Value)
		where := fmt.Sprintf("line %d (%s)", n.StartLine, strings.TrimSpace(n.Original))
		if len(n.Heredocs) > 0 {
			problems = append(problems, where+": heredocs need BuildKit")
		}
		for _, f := range n.Flags {
			name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			switch cmd {
			case "RUN":
				problems = append(problems, fmt.Sprintf("%s: RUN %s needs BuildKit (the classic builder accepts no RUN flags)", where, f))
			case "COPY", "ADD":
				if !classicCopyFlags[name] {
					problems = append(problems, fmt.Sprintf("%s: %s %s needs BuildKit", where, cmd, f))
				}
			}
		}
		// Every variable used must have a value the classic builder knows.
		args := n.Original
		if cmd == "ARG" || cmd == "ENV" {
			_, args, _ = strings.Cut(args, " ")
		}
		for _, m := range varRef.FindAllStringSubmatch(args, -1) {
			v := m[1]
			if scope[v] || (!seenFrom && globals[v]) || (cmd == "FROM" && globals[v]) {
				continue
			}
			if cmd == "RUN" {
				continue // expanded by the shell at run time, e.g. $PATH
			}
			msg := fmt.Sprintf("%s: $%s has no value here", where, v)
			if buildKitOnlyArgs[v] {
				msg += " (an automatic platform argument only BuildKit defines)"
			}
			problems = append(problems, msg)
		}
		if cmd == "RUN" {
			for _, m := range varRef.FindAllStringSubmatch(n.Original, -1) {
				if buildKitOnlyArgs[m[1]] && !scope[m[1]] {
					problems = append(problems, fmt.Sprintf("%s: $%s is an automatic platform argument only BuildKit defines; give it an ARG default", where, m[1]))
				}
			}
		}
		switch cmd {
		case "FROM":
			seenFrom = true
			scope = map[string]bool{}
		case "ARG":
			for node := n.Next; node != nil; node = node.Next {
				name, _, hasDefault := strings.Cut(node.Value, "=")
				switch {
				case !seenFrom && hasDefault:
					globals[name] = true
				case seenFrom && (hasDefault || globals[name]):
					scope[name] = true
				}
			}
		case "ENV":
			for node := n.Next; node != nil; node = node.Next.Next {
				scope[node.Value] = true
				if node.Next == nil {
					break
				}
			}
		}
	}
	return problems, nil
}

// stage is one build stage of a parsed Dockerfile.
type stage struct {
	base         string
	user         string
	entrypoint   string
	instructions []string
}

func stages(t *testing.T, src []byte) []stage {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(src))
	require.NoError(t, err)
	var out []stage
	for _, n := range res.AST.Children {
		cmd := strings.ToUpper(n.Value)
		if cmd == "FROM" {
			out = append(out, stage{base: n.Next.Value})
			continue
		}
		require.NotEmpty(t, out, "instruction before FROM: %s", n.Original)
		s := &out[len(out)-1]
		s.instructions = append(s.instructions, n.Original)
		switch cmd {
		case "USER":
			s.user = n.Next.Value
		case "ENTRYPOINT":
			s.entrypoint = n.Original
		}
	}
	return out
}

// The repository's Dockerfile builds under the classic builder, and the result is small, static
// and non-root.
func TestDockerfileBuildsWithClassicBuilder(t *testing.T) {
	src, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	problems, err := classicBuilderProblems(src)
	require.NoError(t, err)
	assert.Empty(t, problems, "the Dockerfile uses BuildKit-only features; ACR quick builds run the classic builder")

	st := stages(t, src)
	require.GreaterOrEqual(t, len(st), 2, "multi-stage: a Go build stage and a small runtime stage")
	final := st[len(st)-1]
	assert.True(t, strings.HasPrefix(final.base, "gcr.io/distroless/static"),
		"runtime base %q must be distroless static (no shell, no libc: the binary is static)", final.base)
	uid, _, _ := strings.Cut(final.user, ":")
	n, err := strconv.Atoi(uid)
	assert.NoError(t, err, "USER %q must be numeric so Kubernetes runAsNonRoot can verify it", final.user)
	assert.NotZero(t, n, "USER must not be root")
	assert.Contains(t, final.entrypoint, `["`, "ENTRYPOINT in exec form (no shell in the image)")
	build := strings.Join(st[0].instructions, "\n")
	assert.Contains(t, build, "CGO_ENABLED=0", "the binary must be static to run on distroless/static")
	assert.Contains(t, build, "./cmd/consumer", "the build stage builds the consumer")
}

// Each BuildKit-only construct is caught: the check can fail.
func TestClassicBuilderChecksCatchBuildKitSyntax(t *testing.T) {
	const ok = "FROM golang:1.26 AS build\nARG GOARCH=amd64\nENV CGO_ENABLED=0\nRUN go build -o /out/x ./cmd/x\n" +
		"FROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build --chown=65532:65532 /out/x /x\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n"
	problems, err := classicBuilderProblems([]byte(ok))
	require.NoError(t, err)
	require.Empty(t, problems, "a classic-builder Dockerfile passes")

	for _, tc := range []struct{ name, src, want string }{
		{"syntax directive", "# syntax=docker/dockerfile:1\n" + ok, "# syntax="},
		{"cache mount", strings.Replace(ok, "RUN go build", "RUN --mount=type=cache,target=/root/.cache/go-build go build", 1), "RUN --mount"},
		{"network flag", strings.Replace(ok, "RUN go build", "RUN --network=none go build", 1), "RUN --network"},
		{"build platform", strings.Replace(ok, "FROM golang:1.26 AS build", "FROM --platform=$BUILDPLATFORM golang:1.26 AS build", 1), "$BUILDPLATFORM"},
		{"target arch without default", strings.Replace(ok, "RUN go build", "RUN GOARCH=$TARGETARCH go build", 1), "$TARGETARCH"},
		{"heredoc", strings.Replace(ok, "RUN go build -o /out/x ./cmd/x\n", "RUN <<EOF\ngo build -o /out/x ./cmd/x\nEOF\n", 1), "heredocs"},
		{"copy link", strings.Replace(ok, "COPY --from=build", "COPY --link --from=build", 1), "--link"},
		{"copy chmod", strings.Replace(ok, "COPY --from=build", "COPY --chmod=0755 --from=build", 1), "--chmod"},
		{"undefined variable", strings.Replace(ok, "ENTRYPOINT", "WORKDIR $APPDIR\nENTRYPOINT", 1), "$APPDIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems, err := classicBuilderProblems([]byte(tc.src))
			require.NoError(t, err)
			assert.NotEmpty(t, problems, "must be refused:\n%s", tc.src)
			assert.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}

// The image's build context and its COPY lines hold every package of this module that the
// consumer imports (a moved package would otherwise build here and fail in ACR).
func TestImageContextHoldsTheConsumersPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./cmd/consumer").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	ignore, err := os.ReadFile(".dockerignore")
	require.NoError(t, err)
	docker, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var admitted, copied []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if dir, ok := strings.CutPrefix(strings.TrimSpace(l), "!"); ok {
			admitted = append(admitted, dir)
		}
	}
	for _, l := range strings.Split(string(docker), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "COPY" {
			copied = append(copied, f[1])
		}
	}
	under := func(dir string, prefixes []string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(dir+"/", strings.TrimSuffix(p, "/")+"/") })
	}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		dir, ok := strings.CutPrefix(pkg, "github.com/aks-edw/aks-edw/")
		if !ok {
			continue
		}
		n++
		assert.True(t, under(dir, admitted), ".dockerignore leaves %s out of the build context", dir)
		assert.True(t, under(dir, copied), "the Dockerfile copies no folder holding %s", dir)
	}
	assert.GreaterOrEqual(t, n, 5, "the consumer's own packages were listed")
}
