package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/observability"
	"github.com/aks-edw/aks-edw/components"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
	"github.com/aks-edw/aks-edw/infra"
)

// The GitHub issue "Observability": Azure Monitor managed Prometheus and the workload's alerts,
// behind the managedPrometheus switch, for every stack with the switch on and off.

const (
	tMonitorWorkspace = "azure-native:monitor:AzureMonitorWorkspace"
	tDCE              = "azure-native:monitor:DataCollectionEndpoint"
	tActionGroup      = "azure-native:monitor:ActionGroup"
	tRuleGroup        = "azure-native:alertsmanagement:PrometheusRuleGroup"
	// testQueryEndpoint is what the shared mocks compute for the stack's workspace.
	testQueryEndpoint = "https://prometheus-workspace-abcd.westus3.prometheus.monitor.azure.com"
)

// loadConfig is the typed config the program sees for these config values.
func loadConfig(t *testing.T, stack string, cfg map[string]string) infra.Config {
	t.Helper()
	var c infra.Config
	require.NoError(t, pulumitest.New(infra.Project, stack).Run(cfg, func(ctx *pulumi.Context) error {
		var err error
		c, err = infra.LoadConfig(ctx)
		return err
	}))
	return c
}

// prometheusTypes are the types only managed Prometheus creates.
var prometheusTypes = []string{components.ManagedPrometheusType, tMonitorWorkspace, tDCE, tActionGroup, tRuleGroup}

// Every stack, with the switch on (with and without e-mails) and off: what exists, how it is
// wired to the cluster, and the outputs.
func TestManagedPrometheusStacks(t *testing.T) {
	emails := `["oncall@example.com","lead@example.org"]`
	for _, stack := range aksStackNames(t) {
		for _, tc := range []struct {
			name   string
			kv     []string
			on     bool
			emails int
		}{
			{"off", []string{"managedPrometheus", "false"}, false, 0},
			{"on", []string{"managedPrometheus", "true"}, true, 0},
			{"on with e-mails", []string{"managedPrometheus", "true", "alertEmails", emails}, true, 2},
			{"on, ScaledJob", []string{"managedPrometheus", "true", "scaleMode", components.ScaleModeScaledJob}, true, 0},
		} {
			t.Run(stack+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				cfg := withConfig(loadStackConfig(t, stack), tc.kv...)
				run := runStack(t, stack, cfg)
				m := run.mocks
				mc := m.One(t, tCluster)
				insights := m.Get(t, tDCR, "cluster-insights-rule")
				m.Get(t, tDCRA, "cluster-insights-association")

				if !tc.on {
					for _, typ := range prometheusTypes {
						assert.Empty(t, m.ByType(typ), "off: no %s", typ)
					}
					assert.Empty(t, m.ByType("kubernetes:azmonitoring.coreos.com/v1:PodMonitor"), "off: no PodMonitor")
					assert.Len(t, m.ByType(tDCR), 1, "off: only the Container Insights rule")
					assert.Len(t, m.ByType(tDCRA), 1, "off: only the Container Insights association")
					assert.Nil(t, mc.Input("azureMonitorProfile"), "off: no azureMonitorProfile on the cluster")
					assert.Equal(t, "", run.outputs["azureMonitorWorkspaceId"].Value, "off: empty output")
					assert.Equal(t, "", run.outputs["prometheusQueryEndpoint"].Value, "off: empty output")
					return
				}

				// Resources: the component, workspace, endpoint, rule, association and rule group,
				// plus the action group with e-mails, on top of the same config with the switch off;
				// and on the cluster the scraping component with its two PodMonitors.
				off := len(runStack(t, stack, withConfig(cfg, "managedPrometheus", "false", "alertEmails", "[]")).mocks.Resources())
				// + Microsoft's three Linux recording rule groups.
				want := 6 + 3 + 3
				assert.Len(t, m.ByType("kubernetes:azmonitoring.coreos.com/v1:PodMonitor"), 2, "the consumer's and KEDA's PodMonitors")
				if tc.emails > 0 {
					want++
				}
				assert.Equal(t, off+want, len(m.Resources()), "managed Prometheus adds %d resources", want)
				comp := m.One(t, components.ManagedPrometheusType)
				amw, dce, rg := m.One(t, tMonitorWorkspace), m.One(t, tDCE), m.Get(t, tRuleGroup, "prometheus-alerts")
				dcr, dcra := m.Get(t, tDCR, "prometheus-rule"), m.Get(t, tDCRA, "prometheus-association")
				assert.Len(t, m.ByType(tDCR), 2, "the Container Insights rule and the Prometheus rule")
				assert.Len(t, m.ByType(tDCRA), 2)
				assert.NotEqual(t, insights.ID, dcra.Input("dataCollectionRuleId"))
				for _, r := range []*pulumitest.Resource{amw, dce, dcr, dcra, rg} {
					assert.Equal(t, comp.URN, r.Parent, "%s is the component's child", r.Type)
				}

				// The cluster runs the metrics add-on.
				assert.Equal(t, true, mc.Input("azureMonitorProfile.metrics.enabled"), "cluster azureMonitorProfile.metrics.enabled")
				assert.Equal(t, map[string]any{"metricLabelsAllowlist": "", "metricAnnotationsAllowList": ""},
					mc.Input("azureMonitorProfile.metrics.kubeStateMetrics"))

				// Names from the templates, in the stack's region.
				cluster := "aks-aksdemo-" + pulumitest.RandomResult
				assert.Equal(t, "amw-aksdemo-"+pulumitest.RandomResult, amw.Input("azureMonitorWorkspaceName"))
				assert.Equal(t, "MSProm-westus3-"+cluster, dce.Input("dataCollectionEndpointName"))
				assert.Equal(t, "MSProm-westus3-"+cluster, dcr.Input("dataCollectionRuleName"))
				assert.Equal(t, "MSProm-westus3-"+cluster, dcra.Input("associationName"))

				// The rule: the add-on's stream, through the endpoint, into the workspace.
				assert.Equal(t, "Linux", dce.Input("kind"))
				assert.Equal(t, "Linux", dcr.Input("kind"))
				assert.Equal(t, dce.Output("id"), dcr.Input("dataCollectionEndpointId"))
				assert.Equal(t, []any{"Microsoft-PrometheusMetrics"}, dcr.Input("dataSources.prometheusForwarder.0.streams"))
				assert.Equal(t, "PrometheusDataSource", dcr.Input("dataSources.prometheusForwarder.0.name"))
				assert.Equal(t, amw.Output("id"), dcr.Input("destinations.monitoringAccounts.0.accountResourceId"), "DCR destination is the workspace")
				dest := dcr.Input("destinations.monitoringAccounts.0.name")
				assert.Equal(t, []any{map[string]any{"streams": []any{"Microsoft-PrometheusMetrics"}, "destinations": []any{dest}}},
					dcr.Input("dataFlows"), "one flow: the stream to that destination")

				// The association: on the cluster, for this rule.
				assert.Equal(t, mc.Output("id"), dcra.Input("resourceUri"), "association scope is the cluster")
				assert.Equal(t, dcr.Output("id"), dcra.Input("dataCollectionRuleId"))
				assert.True(t, dcra.DependsOn(mc) && dcra.DependsOn(dcr))

				// The rule group: workspace and cluster, this cluster's data, every rule.
				assert.Equal(t, []any{amw.Output("id"), mc.Output("id")}, rg.Input("scopes"), "rule group scopes")
				assert.Equal(t, mc.Output("name"), rg.Input("clusterName"))
				assert.Equal(t, "prom-alerts-aksdemo-"+pulumitest.RandomResult, rg.Input("ruleGroupName"))
				assert.Equal(t, "PT1M", rg.Input("interval"))
				assert.Equal(t, true, rg.Input("enabled"))
				rules := observability.Rules(loadConfig(t, stack, cfg).AlertParams())
				got, _ := rg.Input("rules").([]any)
				require.Len(t, got, len(rules), "one Azure rule per observability rule")
				for i, r := range rules {
					p := "rules." + strconv.Itoa(i) + "."
					assert.Equal(t, r.Alert, rg.Input(p+"alert"))
					assert.Equal(t, r.Expr, rg.Input(p+"expression"), "rule %s expression", r.Alert)
				}
				// Independently of AlertParams: the backlog threshold and the scaler of the mode.
				backlog := ruleExpression(t, rg, "QueueBacklogAboveCapacity")
				if strings.Contains(tc.name, "ScaledJob") {
					assert.True(t, strings.HasSuffix(backlog, "> 144000"), "jobMaxReplicas 3 x jobQueueLength 48000: %s", backlog)
					assert.Contains(t, backlog, `scaledObject="aws2az-queue-scaledjob"`)
				} else {
					assert.True(t, strings.HasSuffix(backlog, "> 24000"), "maxReplicas 3 x queueLength 8000: %s", backlog)
					assert.Contains(t, backlog, `scaledObject="aws2az-queue-scaleobj"`)
				}
				assert.Equal(t, "PT15M", ruleField(t, rg, "QueueBacklogAboveCapacity", "for"), "backlogAlertFor default 15m")

				// The action group exists exactly when there are e-mails, and every rule notifies it.
				groups := m.ByType(tActionGroup)
				if tc.emails == 0 {
					assert.Empty(t, groups, "no e-mails: no action group")
					for i := range rules {
						assert.Nil(t, rg.Input("rules."+strconv.Itoa(i)+".actions"), "no e-mails: rule %d has no actions", i)
					}
				} else {
					require.Len(t, groups, 1)
					ag := groups[0]
					assert.Equal(t, "global", ag.Input("location"))
					assert.Equal(t, true, ag.Input("enabled"))
					assert.Equal(t, "aksdemo", ag.Input("groupShortName"))
					assert.Equal(t, "oncall@example.com", ag.Input("emailReceivers.0.emailAddress"))
					assert.Equal(t, "lead@example.org", ag.Input("emailReceivers.1.emailAddress"))
					assert.Len(t, ag.Input("emailReceivers"), tc.emails)
					for i := range rules {
						assert.Equal(t, []any{map[string]any{"actionGroupId": ag.Output("id")}}, rg.Input("rules."+strconv.Itoa(i)+".actions"), "rule %d", i)
					}
				}

				// Deleted by `pulumi destroy`: in the stack's group (the association on the
				// cluster), tagged, never protected.
				rgName := m.One(t, tResourceGrp).Input("resourceGroupName")
				for _, r := range m.Resources() {
					if r.Parent != comp.URN {
						continue
					}
					assert.False(t, r.Protect, "%s %s must not be protected", r.Type, r.Name)
					if r.Type == tDCRA {
						continue
					}
					assert.Equal(t, rgName, r.Input("resourceGroupName"), "%s %s in the stack's group", r.Type, r.Name)
					assert.Equal(t, stack, r.Input("tags.environment"), "%s %s tagged", r.Type, r.Name)
				}

				// Outputs.
				assert.Equal(t, amw.Output("id"), run.outputs["azureMonitorWorkspaceId"].Value)
				assert.Equal(t, testQueryEndpoint, run.outputs["prometheusQueryEndpoint"].Value)
			})
		}
	}
}

// ruleField is a field of the named rule of a rule group.
func ruleField(t *testing.T, rg *pulumitest.Resource, alert, field string) any {
	t.Helper()
	rules, _ := rg.Input("rules").([]any)
	for i := range rules {
		p := "rules." + strconv.Itoa(i) + "."
		if rg.Input(p+"alert") == alert {
			return rg.Input(p + field)
		}
	}
	t.Fatalf("rule group %s has no rule %s", rg.Name, alert)
	return nil
}

func ruleExpression(t *testing.T, rg *pulumitest.Resource, alert string) string {
	t.Helper()
	s, _ := ruleField(t, rg, alert, "expression").(string)
	return s
}

// backlogAlertFor sets the backlog rule's duration; prod turns managed Prometheus on and dev
// leaves it off, as their stack files say.
func TestManagedPrometheusStackSettings(t *testing.T) {
	m := runStack(t, "prod", withConfig(loadStackConfig(t, "prod"), "backlogAlertFor", "1h30m")).mocks
	assert.Equal(t, "PT1H30M", ruleField(t, m.Get(t, tRuleGroup, "prometheus-alerts"), "QueueBacklogAboveCapacity", "for"))
	assert.Equal(t, "true", loadStackConfig(t, "prod")[infra.Project+":managedPrometheus"], "prod turns managed Prometheus on")
	assert.Equal(t, "false", loadStackConfig(t, "dev")[infra.Project+":managedPrometheus"], "dev keeps the default, off")
}

// Bad monitoring config fails the program before anything is created, naming the key and value.
func TestManagedPrometheusConfigErrors(t *testing.T) {
	base := loadStackConfig(t, "dev")
	for _, tc := range []struct {
		name string
		kv   []string
		want []string
	}{
		{"bad e-mail", []string{"managedPrometheus", "true", "alertEmails", `["oncall@example.com","oncall"]`},
			[]string{`aks-edw:alertEmails: "oncall" is not an e-mail address`}},
		{"alertEmails without managedPrometheus", []string{"alertEmails", `["oncall@example.com"]`},
			[]string{"aks-edw:alertEmails", "aks-edw:managedPrometheus is false"}},
		{"backlogAlertFor below 1m", []string{"backlogAlertFor", "30s"}, []string{"aks-edw:backlogAlertFor: 30s must be between 1m0s and 24h0m0s"}},
		{"backlogAlertFor not a duration", []string{"backlogAlertFor", "fifteen"}, []string{`aks-edw:backlogAlertFor: "fifteen" is not a duration`}},
		{"managedPrometheus not a boolean", []string{"managedPrometheus", "yes"}, []string{"aks-edw:managedPrometheus: must be true or false"}},
		{"alertEmails not an array", []string{"managedPrometheus", "true", "alertEmails", "oncall@example.com"}, []string{"aks-edw:alertEmails: must be a JSON array"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := runProgram("dev", withConfig(base, tc.kv...))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, m.Resources(), "nothing may be registered when the config is invalid")
		})
	}
}
