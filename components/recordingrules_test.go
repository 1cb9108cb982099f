package components

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pulumi/pulumi-azure-native-sdk/alertsmanagement/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/aks-edw/aks-edw/app/observability"
)

// The embedded groups are Microsoft's three Linux groups from the pinned template: their names,
// descriptions, interval and rule counts, and rules checked against the template's text.
func TestLinuxRecordingRuleGroupsAreMicrosofts(t *testing.T) {
	src, groups, err := LinuxRecordingRuleGroups()
	require.NoError(t, err)
	assert.Equal(t, "https://github.com/Azure/prometheus-collector", src.Repository)
	assert.Equal(t, "AddonArmTemplate/FullAzureMonitorMetricsProfile.json", src.Path)
	assert.Equal(t, "39583fd50b2f828f83cc18fc0cece9e3074f56db", src.Commit)

	require.Len(t, groups, 3, "node, kubernetes and UX (Linux); no Windows group")
	for i, want := range []struct {
		key, prefix, description string
		rules                    int
		first, last              string
	}{
		{"node", "NodeRecordingRulesRuleGroup-", "Node Recording Rules RuleGroup - 0.1", 11,
			"instance:node_num_cpu:sum", "instance:node_network_transmit_drop_excluding_lo:rate5m"},
		{"kubernetes", "KubernetesRecordingRulesRuleGroup-", "Kubernetes Recording Rules RuleGroup - 0.1", 19,
			"node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate", "cluster:node_cpu:ratio_rate5m"},
		{"ux", "UXRecordingRulesRuleGroup - ", "UX recording rules for Linux", 18,
			"ux:pod_cpu_usage:sum_irate", "ux:node_network_transmit_drop_total:sum_irate"},
	} {
		g := groups[i]
		assert.Equal(t, want.key, g.Key)
		assert.Equal(t, want.prefix, g.NamePrefix, "the template's name prefix, spaces included")
		assert.Equal(t, want.description, g.Description)
		assert.Equal(t, "PT1M", g.Interval)
		require.Len(t, g.Rules, want.rules, "%s: the template's rule count", g.Key)
		assert.Equal(t, want.first, g.Rules[0].Record)
		assert.Equal(t, want.last, g.Rules[len(g.Rules)-1].Record)
	}

	// A few rules in full, as the template has them (whitespace included).
	node, kube := groups[0], groups[1]
	assert.Equal(t, "count without (cpu, mode) (  node_cpu_seconds_total{job=\"node\",mode=\"idle\"})", node.Rules[0].Expression)
	assert.Equal(t, "rate(node_vmstat_pgmajfault{job=\"node\"}[5m])", node.Rules[4].Expression)
	assert.Equal(t, "sum(rate(node_cpu_seconds_total{job=\"node\",mode!=\"idle\",mode!=\"iowait\",mode!=\"steal\"}[5m])) by (cluster) "+
		"/count(sum(node_cpu_seconds_total{job=\"node\"}) by (cluster, instance, cpu)) by (cluster)", kube.Rules[18].Expression)
	// The four workload relabel rules share a record and differ by their workload_type label.
	var types []string
	for _, r := range kube.Rules {
		if r.Record == "namespace_workload_pod:kube_pod_owner:relabel" {
			types = append(types, r.Labels["workload_type"])
		} else {
			assert.Empty(t, r.Labels, "%s has no labels in the template", r.Record)
		}
	}
	assert.Equal(t, []string{"deployment", "daemonset", "statefulset", "job"}, types)

	// Record names are unique but for those four.
	seen := map[string]int{}
	for _, g := range groups {
		for _, r := range g.Rules {
			seen[r.Record]++
		}
	}
	for rec, n := range seen {
		if rec != "namespace_workload_pod:kube_pod_owner:relabel" {
			assert.Equal(t, 1, n, "%s is recorded %d times", rec, n)
		}
	}
}

// promtoolPath finds Prometheus's rule checker (Debian's prometheus package; `make deps`). The
// test fails, never skips, without it.
func promtoolPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool not found: run `make deps` (installs Debian's prometheus package, which brings promtool)")
	return p
}

// checkRecordingRules writes groups as a Prometheus rule file and runs `promtool check rules`.
func checkRecordingRules(t *testing.T, groups []RecordingRuleGroup) (string, error) {
	t.Helper()
	type fileRule struct {
		Record string            `json:"record"`
		Expr   string            `json:"expr"`
		Labels map[string]string `json:"labels,omitempty"`
	}
	type fileGroup struct {
		Name     string     `json:"name"`
		Interval string     `json:"interval"`
		Rules    []fileRule `json:"rules"`
	}
	var file struct {
		Groups []fileGroup `json:"groups"`
	}
	for _, g := range groups {
		fg := fileGroup{Name: g.NamePrefix + "aks1", Interval: "1m"}
		for _, r := range g.Rules {
			fg.Rules = append(fg.Rules, fileRule{Record: r.Record, Expr: r.Expression, Labels: r.Labels})
		}
		file.Groups = append(file.Groups, fg)
	}
	b, err := yaml.Marshal(file)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "recording.yml"), b, 0o644))
	cmd := exec.Command(promtoolPath(t), "check", "rules", "recording.yml")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// Every expression and record name is valid for Prometheus's own parser (promtool).
func TestRecordingRulesParseWithPromtool(t *testing.T) {
	_, groups, err := LinuxRecordingRuleGroups()
	require.NoError(t, err)
	out, err := checkRecordingRules(t, groups)
	require.NoError(t, err, out)
	assert.Contains(t, out, "SUCCESS: 48 rules found")

	// The check can fail: a broken expression is refused with the parser's message.
	broken := append([]RecordingRuleGroup(nil), groups...)
	broken[2].Rules = append([]RecordingRule(nil), groups[2].Rules...)
	broken[2].Rules[3].Expression = strings.Replace(broken[2].Rules[3].Expression, ")", "", 1)
	out, err = checkRecordingRules(t, broken)
	require.Error(t, err, out)
	assert.Contains(t, out, "parse error")
}

// The recording rules read only kube-state-metrics series that the minimal ingestion profile
// keeps (the profile exists for them: "only metrics used by default dashboards, default
// recording rules & default alerts are collected"). One exception, Microsoft's own slip, copied
// as is: ux:pod_container_restarts:max ORs in kube_pod_init_status_restarts_total, a name
// kube-state-metrics does not export (its series is kube_pod_init_container_status_restarts_total,
// which the profile keeps), so that branch matches nothing, dropped or not.
func TestRecordingRulesUseKeptKubeStateMetrics(t *testing.T) {
	const microsoftsTypo = "kube_pod_init_status_restarts_total"
	require.True(t, observability.KeptByMinimalIngestion("kube_pod_init_container_status_restarts_total"))
	_, groups, err := LinuxRecordingRuleGroups()
	require.NoError(t, err)
	used := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules {
			names, err := observability.MetricNames(r.Expression)
			require.NoError(t, err, r.Record)
			for _, n := range names {
				if strings.HasPrefix(n, "kube_") {
					used[n] = true
					if n == microsoftsTypo {
						assert.Equal(t, "ux:pod_container_restarts:max", r.Record)
						continue
					}
					assert.True(t, observability.KeptByMinimalIngestion(n), "%s reads %s, which the minimal ingestion profile drops", r.Record, n)
				}
			}
		}
	}
	for _, n := range []string{"kube_pod_info", "kube_pod_status_phase", "kube_pod_owner", "kube_replicaset_owner",
		"kube_pod_container_resource_requests", "kube_pod_container_resource_limits", microsoftsTypo} {
		assert.True(t, used[n], "the scan found no %s: it is not reading the expressions", n)
	}
}

// The pure builder: one group per embedded group, with the template's properties and every rule.
func TestRecordingRuleGroupsBuilder(t *testing.T) {
	a := managedPrometheusTestArgs()
	workspaceID := pulumi.String("/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Monitor/accounts/amw1")
	got, err := recordingRuleGroupsArgs(a, workspaceID)
	require.NoError(t, err)
	_, groups, err := LinuxRecordingRuleGroups()
	require.NoError(t, err)
	require.Len(t, got, len(groups))
	for i, g := range got {
		want := groups[i]
		assert.Equal(t, want.Key, g.Key)
		args := g.Args
		assert.Equal(t, a.ResourceGroupName, args.ResourceGroupName)
		assert.Equal(t, a.Location, args.Location, "the workspace's region")
		assert.Equal(t, pulumi.StringArray{workspaceID, a.ClusterID}, args.Scopes)
		assert.Equal(t, a.ClusterName, args.ClusterName)
		assert.Equal(t, pulumi.String("PT1M"), args.Interval)
		assert.Equal(t, pulumi.Bool(true), args.Enabled)
		assert.Equal(t, pulumi.String(want.Description), args.Description)
		rules := args.Rules.(alertsmanagement.PrometheusRuleArray)
		require.Len(t, rules, len(want.Rules), want.Key)
		for j, r := range rules {
			rule := r.(*alertsmanagement.PrometheusRuleArgs)
			assert.Equal(t, pulumi.String(want.Rules[j].Record), rule.Record, "%s rule %s", want.Key, strconv.Itoa(j))
			assert.Equal(t, pulumi.String(want.Rules[j].Expression), rule.Expression)
			assert.Nil(t, rule.Alert)
			assert.Nil(t, rule.Severity)
		}
	}
}
