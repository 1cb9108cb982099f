package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/ops/plan"
)

// planDocStacks are the stacks whose offline plan is committed as docs/plan.<stack>.md.
var planDocStacks = map[string]bool{"dev": true}

// TestPlan runs the offline plan (cmd/plan) for every stack and checks it against the reviewed
// inventory testdata/inventory.<stack>.golden: the same resources, and every input and option
// the plan shows is in the inventory, and the manifests show every input of the Kubernetes
// objects. For dev it also checks the committed example docs/plan.dev.md byte for byte.
// `go test . -run '^(TestStacks|TestPlan)$' -update` regenerates the inventories and the docs.
func TestPlan(t *testing.T) {
	for _, stack := range stackNames(t) {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			p, err := plan.RunWithConfig(".", stack, map[string]string{"imageSourceRepository": pulumitest.ImageSourceRepository})
			require.NoError(t, err, "offline plan for %s", stack)
			goldenPath := filepath.Join("testdata", "inventory."+stack+".golden")
			golden, err := os.ReadFile(goldenPath)
			require.NoError(t, err, "missing golden inventory; run: %s", plan.RegenerateCommand)
			checkPlanAgainstInventory(t, p, parseInventory(string(golden)), goldenPath)
			if planDocStacks[stack] {
				checkPlanDoc(t, p)
			}
		})
	}
}

// inventoryEntry is one resource of a golden inventory: its input lines and option tokens.
type inventoryEntry struct {
	lines   map[string]bool
	options map[string]bool
}

// parseInventory reads a golden inventory: "type name" header lines (not indented), then the
// resource's "  # options" line and "  path=value" lines.
func parseInventory(text string) map[string]*inventoryEntry {
	out := map[string]*inventoryEntry{}
	var cur *inventoryEntry
	for _, l := range strings.Split(text, "\n") {
		switch {
		case l == "":
		case !strings.HasPrefix(l, " "):
			cur = &inventoryEntry{lines: map[string]bool{}, options: map[string]bool{}}
			out[l] = cur
		case cur == nil:
		case strings.HasPrefix(l, "  # "):
			for _, o := range strings.Fields(strings.TrimPrefix(l, "  # ")) {
				cur.options[o] = true
			}
		default:
			cur.lines[strings.TrimPrefix(l, "  ")] = true
		}
	}
	return out
}

func checkPlanAgainstInventory(t *testing.T, p *plan.Plan, inv map[string]*inventoryEntry, goldenPath string) {
	t.Helper()
	hint := "(the plan and " + goldenPath + " disagree; review, then regenerate with: " + plan.RegenerateCommand + ")"

	inPlan := map[string]*plan.Node{}
	p.Root.Walk(func(n *plan.Node) {
		if n != p.Root {
			inPlan[n.Type+" "+n.Name] = n
		}
	})
	var missing, extra []string
	for h := range inv {
		if inPlan[h] == nil {
			missing = append(missing, h)
		}
	}
	for h := range inPlan {
		if inv[h] == nil {
			extra = append(extra, h)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	assert.Empty(t, missing, "resources in %s but not in the plan's tree %s", goldenPath, hint)
	assert.Empty(t, extra, "resources in the plan's tree but not in %s %s", goldenPath, hint)

	for h, n := range inPlan {
		e := inv[h]
		if e == nil {
			continue
		}
		for _, f := range n.Fields {
			assert.True(t, e.lines[f.Path+"="+f.Value], "the plan shows %s=%s for %s, but %s has no such line %s",
				f.Path, f.Value, h, goldenPath, hint)
		}
		for _, o := range n.Options {
			assert.True(t, e.options[o], "the plan shows option %s for %s, but %s does not %s", o, h, goldenPath, hint)
		}
	}

	// The manifests show every input of every Kubernetes object, exactly as the inventory has it.
	for _, mf := range p.Manifests {
		h := mf.Type + " " + mf.Name
		e := inv[h]
		if !assert.NotNil(t, e, "manifest for %s, which %s lacks %s", h, goldenPath, hint) {
			continue
		}
		var lines []string
		flattenPlain("", mf.Object, &lines)
		got := map[string]bool{}
		for _, l := range lines {
			got[l] = true
			assert.True(t, e.lines[l], "the %s manifest has %s, which %s lacks %s", h, l, goldenPath, hint)
		}
		for l := range e.lines {
			assert.True(t, got[l], "%s has %s for %s, which its manifest lacks %s", goldenPath, l, h, hint)
		}
	}
	// The rendered tree has one "type  name" line per resource, and nothing else with a branch.
	text := p.String()
	start := strings.Index(text, "\nResources (")
	end := strings.Index(text, "\nKubernetes manifests (")
	require.True(t, start >= 0 && end > start, "the plan lacks its Resources or Kubernetes manifests section")
	seen := 0
	for _, l := range strings.Split(text[start:end], "\n") {
		i := max(strings.LastIndex(l, "├─ "), strings.LastIndex(l, "└─ "))
		if i < 0 {
			continue
		}
		seen++
		typ, name, _ := strings.Cut(l[i+len("├─ "):], "  ")
		assert.NotNil(t, inPlan[typ+" "+name], "tree line %q names no resource of the plan", l)
	}
	assert.Equal(t, len(inPlan), seen, "the rendered tree has one line per resource")
}

// flattenPlain renders a plain value as the inventory's "path=value" lines (pulumitest.Flatten).
func flattenPlain(prefix string, v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 && prefix != "" {
			*out = append(*out, prefix+"={}")
		}
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flattenPlain(p, e, out)
		}
	case []any:
		if len(x) == 0 {
			*out = append(*out, prefix+"=[]")
		}
		for i, e := range x {
			flattenPlain(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
	case nil:
		*out = append(*out, prefix+"=null")
	default:
		*out = append(*out, fmt.Sprintf("%s=%v", prefix, x))
	}
}

// checkPlanDoc compares docs/plan.<stack>.md with the plan's Markdown, or rewrites it with -update.
func checkPlanDoc(t *testing.T, p *plan.Plan) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, p.Markdown(&b))
	path := filepath.Join("docs", "plan."+p.Stack+".md")
	if *update {
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing %s; run: %s", path, plan.RegenerateCommand)
	if string(want) != b.String() {
		t.Errorf("%s differs from the offline plan of %s (review, then regenerate with: %s)\n%s",
			path, p.Stack, plan.RegenerateCommand, lineDiff(string(want), b.String()))
	}
}

// TestPlanDrainTimes pins the plan's drain estimate for each scale mode and platform: replicas =
// min(max, ceil(backlog / queueLength)), each at components.ReplicaRate of the stack's
// concurrency and CPU, together at most the queue's target.
func TestPlanDrainTimes(t *testing.T) {
	for _, tc := range []struct {
		stack string
		cfg   map[string]string
		want  string
	}{
		{"dev", nil, "10,000 msgs: 2 x 833 msg/s = 1667 msg/s -> 6s; 1,000,000 msgs: 3 x 833 msg/s = 2000 msg/s -> 8m20s"},
		{"dev", map[string]string{"scaleMode": "ScaledJob"}, "10,000 msgs: 1 x 833 msg/s = 833 msg/s -> 12s; 1,000,000 msgs: 3 x 833 msg/s = 2000 msg/s -> 8m20s"},
		{"dev", map[string]string{"consumerConcurrency": "4", "queueLength": "1000", "maxReplicas": "20"},
			"10,000 msgs: 10 x 301 msg/s = 2000 msg/s -> 5s; 1,000,000 msgs: 20 x 301 msg/s = 2000 msg/s -> 8m20s"},
		{"dev-aca", nil, "10,000 msgs: 2 x 833 msg/s = 1667 msg/s -> 6s"},
	} {
		cfg := map[string]string{"imageSourceRepository": pulumitest.ImageSourceRepository}
		for k, v := range tc.cfg {
			cfg[k] = v
		}
		p, err := plan.RunWithConfig(".", tc.stack, cfg)
		require.NoError(t, err)
		got := ""
		for _, s := range p.Settings {
			if s.Name == "drain (estimated)" {
				got = s.Value
			}
		}
		assert.Contains(t, got, tc.want, "%s %v", tc.stack, tc.cfg)
	}
}
