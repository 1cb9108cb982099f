package observability

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The dashboard shows what the issue asks for, and every panel query parses (Prometheus's own
// parser, through promtool) and names only exported metrics.
func TestDashboardPanels(t *testing.T) {
	d, err := ParseDashboard(DashboardJSON)
	require.NoError(t, err)
	assert.Equal(t, "aks-edw-consumer", d.UID)

	titles := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		titles[p.Title] = true
		assert.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		assert.Positive(t, p.GridPos.W*p.GridPos.H, "panel %q has no size", p.Title)
	}
	for _, want := range []string{"Throughput", "Latency percentiles", "Poisoned", "In flight", "Ready pods", "Replicas", "Queue backlog", "Storage throttled by stage"} {
		assert.True(t, titles[want], "no %q panel", want)
	}
	assertDashboardQueries(t, d)
}

func assertDashboardQueries(t *testing.T, d Dashboard) {
	t.Helper()
	problems := dashboardProblems(t, d)
	assert.Empty(t, problems)
}

// dashboardProblems lists every query naming a metric nothing exports, and any query promtool
// cannot parse.
func dashboardProblems(t *testing.T, d Dashboard) []string {
	t.Helper()
	catalogue, err := Catalogue()
	require.NoError(t, err)
	var problems []string
	unknown := func(what, expr string) {
		names, err := MetricNames(expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			return
		}
		if len(names) == 0 {
			problems = append(problems, fmt.Sprintf("%s selects no metric", what))
		}
		for _, n := range names {
			if _, ok := catalogue[n]; !ok {
				problems = append(problems, fmt.Sprintf("%s names %s, which neither the consumer, KEDA nor kube-state-metrics exports", what, n))
			}
		}
	}
	type record struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var records []record
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			unknown(fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), tg.Expr)
			records = append(records, record{Record: fmt.Sprintf("dashboard:panel%d_%s", p.ID, strings.ToLower(tg.RefID)), Expr: AsPromQL(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, yaml.Unmarshal(v.Query, &q), "variable %s", v.Name)
		m := regexp.MustCompile(`^label_values\((.*), *[a-zA-Z_]+\)$`).FindStringSubmatch(q.Query)
		if m == nil {
			problems = append(problems, fmt.Sprintf("variable %s: %q is not label_values(series, label)", v.Name, q.Query))
			continue
		}
		unknown("variable "+v.Name, m[1])
	}
	// Parse every query with promtool, as recording rules.
	dir := t.TempDir()
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dashboard.yml"), b, 0o644))
	if out, err := runPromtool(t, dir, "check", "rules", "dashboard.yml"); err != nil {
		problems = append(problems, "a dashboard query does not parse: "+out)
	}
	return problems
}

// The checks can fail: an unknown metric and a query that does not parse are both caught.
func TestDashboardChecksCatchBrokenQueries(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown metric", "consumer_messages_in_flight", "consumer_messages_inflight", "names consumer_messages_inflight"},
		{"unbalanced parenthesis", `sum(consumer_ready{namespace=\"$namespace\"})`, `sum(consumer_ready{namespace=\"$namespace\"}`, "unclosed left parenthesis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(string(DashboardJSON), tc.from, tc.to, 1)
			require.NotEqual(t, string(DashboardJSON), broken, "mutation did not apply")
			d, err := ParseDashboard([]byte(broken))
			require.NoError(t, err)
			assert.Contains(t, strings.Join(dashboardProblems(t, d), "\n"), tc.want)
		})
	}
}
