package components

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi-azure-native-sdk/alertsmanagement/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/monitor/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/observability"
	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

const (
	tAMW       = "azure-native:monitor:AzureMonitorWorkspace"
	tDCE       = "azure-native:monitor:DataCollectionEndpoint"
	tPromDCR   = "azure-native:monitor:DataCollectionRule"
	tPromDCRA  = "azure-native:monitor:DataCollectionRuleAssociation"
	tActionGrp = "azure-native:monitor:ActionGroup"
	tRuleGroup = "azure-native:alertsmanagement:PrometheusRuleGroup"
	testAKSID  = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"
)

func testAlertParams() observability.Params {
	return observability.Params{Namespace: "aqs-demo", Scaler: "scaler", Container: "consumer", QueueName: "q1", MaxReplicas: 5, QueueLength: 4000, BacklogFor: 15 * time.Minute}
}

func managedPrometheusTestArgs(emails ...string) *ManagedPrometheusArgs {
	return &ManagedPrometheusArgs{
		ResourceGroupName: pulumi.String("rg"), Location: pulumi.String("westus3"),
		WorkspaceName: pulumi.String("amw1"), ClusterID: pulumi.String(testAKSID),
		ClusterName: pulumi.String("aks1"), ClusterLocation: pulumi.String("eastus2"),
		RuleGroupName: pulumi.String("alerts1"), Rules: observability.Rules(testAlertParams()),
		AlertEmails: emails, ActionGroupName: pulumi.String("ag1"), ActionGroupShortName: "aksdemo",
		Tags: map[string]string{"owner": "me"},
	}
}

// The names follow Microsoft's templates: MSProm-<region>-<cluster>, cut to 44 (endpoint) and
// 64 (rule) characters, the association's not cut.
func TestManagedPrometheusNames(t *testing.T) {
	long := "aks-" + strings.Repeat("a", 80)
	for _, tc := range []struct {
		name, region, cluster string
		max                   int
		want                  string
	}{
		{"short, endpoint", "westus3", "aks-aksdemo-x7k2p9", maxEndpointName, "MSProm-westus3-aks-aksdemo-x7k2p9"},
		{"short, rule", "westus3", "aks-aksdemo-x7k2p9", maxRuleName, "MSProm-westus3-aks-aksdemo-x7k2p9"},
		{"long, endpoint", "westus3", long, maxEndpointName, ("MSProm-westus3-" + long)[:44]},
		{"long, rule", "westus3", long, maxRuleName, ("MSProm-westus3-" + long)[:64]},
		{"association, not cut", "westus3", long, 0, "MSProm-westus3-" + long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, prometheusName(tc.region, tc.cluster, tc.max))
		})
	}

	// A cut that lands on a hyphen drops it (issue 17 item 5e).
	onHyphen := strings.Repeat("a", maxEndpointName-len("MSProm-westus3-")-1) + "-x7k2p9"
	assert.Equal(t, "MSProm-westus3-"+strings.Repeat("a", 28), prometheusName("westus3", onHyphen, maxEndpointName))
	// Over long regions and prefixes (aks-<prefix>-<6-char suffix>, as infra names the cluster):
	// never longer than the limit, never ending in "-", always the start of the full name.
	for _, region := range []string{"westus3", "eastus", "southcentralus", "australiasoutheast", "germanywestcentral", "switzerlandnorth"} {
		for n := 1; n <= 30; n++ {
			cluster := "aks-" + strings.Repeat("p", n) + "-x7k2p9"
			full := "MSProm-" + region + "-" + cluster
			for _, max := range []int{maxEndpointName, maxRuleName} {
				got := prometheusName(region, cluster, max)
				assert.LessOrEqual(t, len(got), max, got)
				assert.False(t, strings.HasSuffix(got, "-"), "%s ends with a hyphen", got)
				assert.True(t, strings.HasPrefix(full, got), got)
				assert.GreaterOrEqual(t, len(got), min(len(full), max)-1, "at most the one hyphen is dropped: %s", got)
			}
		}
	}
}

// Each bad argument is reported, all at once, before anything is registered.
func TestManagedPrometheusArgsValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(a *ManagedPrometheusArgs)
		want   []string
	}{
		{"nil args", nil, []string{"args are required"}},
		{"missing inputs", func(a *ManagedPrometheusArgs) { a.ClusterID, a.WorkspaceName, a.ClusterLocation = nil, nil, nil },
			[]string{"ClusterID is required", "WorkspaceName is required", "ClusterLocation is required"}},
		{"no rules", func(a *ManagedPrometheusArgs) { a.Rules = nil }, []string{"at least one rule"}},
		{"rule without expression", func(a *ManagedPrometheusArgs) { a.Rules[2].Expr = "" }, []string{"rule 2: Alert and Expr are required"}},
		{"bad e-mail", func(a *ManagedPrometheusArgs) {
			a.AlertEmails = []string{"ops@example.com", "not-an-address", "ops@localhost"}
		},
			[]string{`"not-an-address" is not an e-mail address`, `"ops@localhost" is not an e-mail address`}},
		{"display name", func(a *ManagedPrometheusArgs) { a.AlertEmails = []string{"Ops <ops@example.com>"} }, []string{`"Ops <ops@example.com>"`}},
		{"short name too long", func(a *ManagedPrometheusArgs) {
			a.AlertEmails, a.ActionGroupShortName = []string{"ops@example.com"}, "thirteenchars"
		}, []string{"ActionGroupShortName \"thirteenchars\" must be 1-12 characters"}},
		{"no action group name", func(a *ManagedPrometheusArgs) { a.AlertEmails, a.ActionGroupName = []string{"ops@example.com"}, nil },
			[]string{"ActionGroupName is required when AlertEmails is set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args *ManagedPrometheusArgs
			if tc.mutate != nil {
				args = managedPrometheusTestArgs()
				tc.mutate(args)
			}
			m := pulumitest.New("aks-edw", "test")
			err := m.Run(nil, func(ctx *pulumi.Context) error { _, err := NewManagedPrometheus(ctx, "p", args); return err })
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, m.Resources(), "nothing is registered on invalid args")
		})
	}
	// Without e-mails, neither action group setting is needed.
	args := managedPrometheusTestArgs()
	args.ActionGroupName, args.ActionGroupShortName = nil, ""
	require.NoError(t, args.validate())
}

// The action group exists only with e-mails: one receiver each, common alert schema, global,
// enabled.
func TestManagedPrometheusActionGroupBuilder(t *testing.T) {
	assert.Nil(t, actionGroupArgs(managedPrometheusTestArgs()), "no e-mails: no action group")
	ag := actionGroupArgs(managedPrometheusTestArgs("a@example.com", "b@example.org"))
	require.NotNil(t, ag)
	assert.Equal(t, pulumi.String(ActionGroupLocation), ag.Location)
	assert.Equal(t, pulumi.Bool(true), ag.Enabled)
	assert.Equal(t, pulumi.String("aksdemo"), ag.GroupShortName)
	receivers := ag.EmailReceivers.(monitor.EmailReceiverArray)
	require.Len(t, receivers, 2)
	for i, want := range []string{"a@example.com", "b@example.org"} {
		r := receivers[i].(*monitor.EmailReceiverArgs)
		assert.Equal(t, pulumi.String(want), r.EmailAddress)
		assert.Equal(t, pulumi.Bool(true), r.UseCommonAlertSchema)
	}
}

// One alerting rule in Microsoft's recommended-alerts format, from an observability.Rule.
func TestManagedPrometheusAlertRuleBuilder(t *testing.T) {
	base := observability.Rule{Alert: "A", Expr: "up == 0", Severity: observability.SeverityError, Summary: "s", Action: "do x"}
	withFor := base
	withFor.For = 90 * time.Minute
	keda := base
	keda.NeedsKEDAMetrics = true
	for _, tc := range []struct {
		name        string
		rule        observability.Rule
		actionGroup pulumi.StringInput
		wantFor     pulumi.StringPtrInput
		wantActions int
		wantLabels  pulumi.StringMap
	}{
		{"no for, no action group", base, nil, nil, 0, pulumi.StringMap{"severity": pulumi.String("error")}},
		{"for, action group", withFor, pulumi.String("/ag"), pulumi.String("PT1H30M"), 1, pulumi.StringMap{"severity": pulumi.String("error")}},
		{"needs KEDA's metrics", keda, nil, nil, 0,
			pulumi.StringMap{"severity": pulumi.String("error"), "needs": pulumi.String("keda-operator-metrics")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := alertRuleArgs(tc.rule, tc.actionGroup)
			assert.Equal(t, pulumi.String(tc.rule.Alert), r.Alert)
			assert.Equal(t, pulumi.String(tc.rule.Expr), r.Expression)
			assert.Equal(t, tc.wantFor, r.For)
			assert.Equal(t, pulumi.Int(1), r.Severity)
			assert.Equal(t, tc.wantLabels, r.Labels)
			assert.Equal(t, pulumi.StringMap{"summary": pulumi.String("s"), "description": pulumi.String("do x")}, r.Annotations)
			assert.Equal(t, &alertsmanagement.PrometheusRuleResolveConfigurationArgs{
				AutoResolved: pulumi.Bool(true), TimeToResolve: pulumi.String("PT10M"),
			}, r.ResolveConfiguration)
			if tc.wantActions == 0 {
				assert.Nil(t, r.Actions)
				return
			}
			actions := r.Actions.(alertsmanagement.PrometheusRuleGroupActionArray)
			require.Len(t, actions, tc.wantActions)
			assert.Equal(t, tc.actionGroup, actions[0].(*alertsmanagement.PrometheusRuleGroupActionArgs).ActionGroupId)
		})
	}
}

// The component under mocks, with and without alert e-mails.
func TestManagedPrometheusComponent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		emails []string
	}{
		{"with e-mails", []string{"oncall@example.com", "lead@example.org"}},
		{"without e-mails", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := managedPrometheusTestArgs(tc.emails...)
			m := runAzure(t, func(ctx *pulumi.Context) error { _, err := NewManagedPrometheus(ctx, "p", args); return err })
			requireChildrenParented(t, m, ManagedPrometheusType)

			amw, dce, dcr, dcra, rg := m.One(t, tAMW), m.One(t, tDCE), m.One(t, tPromDCR), m.One(t, tPromDCRA), m.Get(t, tRuleGroup, "p-alerts")
			require.Len(t, m.ByType(tRuleGroup), 4, "the alerts and Microsoft's three recording rule groups")
			assert.Equal(t, "amw1", amw.Input("azureMonitorWorkspaceName"))
			for _, r := range append([]*pulumitest.Resource{amw, dce, dcr}, m.ByType(tRuleGroup)...) {
				assert.Equal(t, "rg", r.Input("resourceGroupName"), "%s in the stack's group", r.Type)
				assert.Equal(t, "westus3", r.Input("location"), "%s in the workspace's region", r.Type)
				assert.Equal(t, "me", r.Input("tags.owner"), "%s tagged", r.Type)
				assert.False(t, r.Protect, "%s must not be protected (destroy deletes it)", r.Type)
			}

			assert.Equal(t, "MSProm-westus3-aks1", dce.Input("dataCollectionEndpointName"))
			assert.Equal(t, "Linux", dce.Input("kind"))

			assert.Equal(t, "MSProm-westus3-aks1", dcr.Input("dataCollectionRuleName"))
			assert.Equal(t, "Linux", dcr.Input("kind"))
			assert.Equal(t, dce.ID, dcr.Input("dataCollectionEndpointId"), "the rule uses the endpoint")
			assert.Equal(t, []any{map[string]any{
				"name": "PrometheusDataSource", "streams": []any{"Microsoft-PrometheusMetrics"}, "labelIncludeFilter": map[string]any{},
			}}, dcr.Input("dataSources.prometheusForwarder"))
			assert.Equal(t, []any{map[string]any{"accountResourceId": amw.ID, "name": "MonitoringAccount1"}},
				dcr.Input("destinations.monitoringAccounts"), "into the workspace")
			assert.Equal(t, []any{map[string]any{"streams": []any{"Microsoft-PrometheusMetrics"}, "destinations": []any{"MonitoringAccount1"}}},
				dcr.Input("dataFlows"), "one flow, the stream to the workspace destination")

			assert.Equal(t, testAKSID, dcra.Input("resourceUri"), "associated with the cluster")
			assert.Equal(t, "MSProm-eastus2-aks1", dcra.Input("associationName"), "named for the cluster's region")
			assert.Equal(t, dcr.ID, dcra.Input("dataCollectionRuleId"))

			assert.Equal(t, []any{amw.ID, testAKSID}, rg.Input("scopes"), "workspace and cluster, as Microsoft's templates")
			assert.Equal(t, "aks1", rg.Input("clusterName"))
			assert.Equal(t, "alerts1", rg.Input("ruleGroupName"))
			assert.Equal(t, "PT1M", rg.Input("interval"))
			assert.Equal(t, true, rg.Input("enabled"))
			rules, _ := rg.Input("rules").([]any)
			want := observability.Rules(testAlertParams())
			require.Len(t, rules, len(want))

			groups := m.ByType(tActionGrp)
			if len(tc.emails) == 0 {
				assert.Empty(t, groups, "no e-mails: no action group")
				assert.Len(t, m.Resources(), 9, "component, workspace, endpoint, rule, association, alert rule group, 3 recording rule groups")
				for i := range rules {
					assert.Nil(t, rg.Input("rules."+strconv.Itoa(i)+".actions"), "rule %d has no actions", i)
				}
				return
			}
			require.Len(t, groups, 1)
			ag := groups[0]
			assert.Len(t, m.Resources(), 10)
			assert.Equal(t, "global", ag.Input("location"))
			assert.Equal(t, "ag1", ag.Input("actionGroupName"))
			assert.Equal(t, "rg", ag.Input("resourceGroupName"))
			receivers, _ := ag.Input("emailReceivers").([]any)
			require.Len(t, receivers, len(tc.emails))
			for i, e := range tc.emails {
				assert.Equal(t, e, ag.Input("emailReceivers."+strconv.Itoa(i)+".emailAddress"))
				assert.Equal(t, true, ag.Input("emailReceivers."+strconv.Itoa(i)+".useCommonAlertSchema"))
			}
			for i := range rules {
				assert.Equal(t, []any{map[string]any{"actionGroupId": ag.ID}}, rg.Input("rules."+strconv.Itoa(i)+".actions"), "rule %d notifies the action group", i)
			}
		})
	}
}

// Every rule of observability.Rules becomes one Azure rule with the same name, expression,
// duration, severity and text.
func TestManagedPrometheusRulesMatchObservability(t *testing.T) {
	m := runAzure(t, func(ctx *pulumi.Context) error {
		_, err := NewManagedPrometheus(ctx, "p", managedPrometheusTestArgs())
		return err
	})
	rg := m.Get(t, tRuleGroup, "p-alerts")
	for i, r := range observability.Rules(testAlertParams()) {
		p := "rules." + strconv.Itoa(i) + "."
		assert.Equal(t, r.Alert, rg.Input(p+"alert"))
		assert.Equal(t, r.Expr, rg.Input(p+"expression"), r.Alert)
		if r.For > 0 {
			assert.Equal(t, observability.ISODuration(r.For), rg.Input(p+"for"), r.Alert)
		} else {
			assert.Nil(t, rg.Input(p+"for"), "%s fires at once: no for", r.Alert)
		}
		assert.EqualValues(t, int(r.Severity), rg.Input(p+"severity"), r.Alert)
		assert.Equal(t, r.Severity.Label(), rg.Input(p+"labels.severity"), r.Alert)
		if r.NeedsKEDAMetrics {
			assert.Equal(t, "keda-operator-metrics", rg.Input(p+"labels.needs"), "%s is labelled as needing KEDA's metrics", r.Alert)
		} else {
			assert.Nil(t, rg.Input(p+"labels.needs"), r.Alert)
		}
		assert.Equal(t, r.Summary, rg.Input(p+"annotations.summary"), r.Alert)
		assert.Equal(t, r.Action, rg.Input(p+"annotations.description"), r.Alert)
		assert.Equal(t, true, rg.Input(p+"resolveConfiguration.autoResolved"), r.Alert)
		assert.Equal(t, "PT10M", rg.Input(p+"resolveConfiguration.timeToResolve"), r.Alert)
	}
}

// Microsoft's three Linux recording rule groups, as its onboarding template creates them: named
// for the cluster, in the workspace's region, scoped to the workspace and the cluster, every
// minute, enabled, each rule verbatim; parented to the component, tagged, not protected.
func TestManagedPrometheusRecordingRuleGroups(t *testing.T) {
	m := runAzure(t, func(ctx *pulumi.Context) error {
		_, err := NewManagedPrometheus(ctx, "p", managedPrometheusTestArgs())
		return err
	})
	requireChildrenParented(t, m, ManagedPrometheusType)
	amw := m.One(t, tAMW)
	_, groups, err := LinuxRecordingRuleGroups()
	require.NoError(t, err)
	for _, tc := range []struct{ resource, name, description string }{
		{"p-recording-node", "NodeRecordingRulesRuleGroup-aks1", "Node Recording Rules RuleGroup - 0.1"},
		{"p-recording-kubernetes", "KubernetesRecordingRulesRuleGroup-aks1", "Kubernetes Recording Rules RuleGroup - 0.1"},
		{"p-recording-ux", "UXRecordingRulesRuleGroup - aks1", "UX recording rules for Linux"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := m.Get(t, tRuleGroup, tc.resource)
			assert.Equal(t, tc.name, rg.Input("ruleGroupName"))
			assert.Equal(t, tc.description, rg.Input("description"))
			assert.Equal(t, "rg", rg.Input("resourceGroupName"))
			assert.Equal(t, "westus3", rg.Input("location"), "in the workspace's region")
			assert.Equal(t, []any{amw.ID, testAKSID}, rg.Input("scopes"), "workspace and cluster, as the template")
			assert.Equal(t, "aks1", rg.Input("clusterName"))
			assert.Equal(t, "PT1M", rg.Input("interval"))
			assert.Equal(t, true, rg.Input("enabled"))
			assert.Equal(t, "me", rg.Input("tags.owner"))
			assert.False(t, rg.Protect)

			var want RecordingRuleGroup
			for _, g := range groups {
				if "p-recording-"+g.Key == tc.resource {
					want = g
				}
			}
			rules, _ := rg.Input("rules").([]any)
			require.Len(t, rules, len(want.Rules))
			for i, r := range want.Rules {
				p := "rules." + strconv.Itoa(i) + "."
				assert.Equal(t, r.Record, rg.Input(p+"record"), "%s rule %d", tc.name, i)
				assert.Equal(t, r.Expression, rg.Input(p+"expression"), "%s rule %s", tc.name, r.Record)
				for k, v := range r.Labels {
					assert.Equal(t, v, rg.Input(p+"labels."+k), "%s rule %s label %s", tc.name, r.Record, k)
				}
				if len(r.Labels) == 0 {
					assert.Nil(t, rg.Input(p+"labels"), "%s rule %s has no labels", tc.name, r.Record)
				}
				for _, alertOnly := range []string{"alert", "for", "severity", "actions", "annotations", "resolveConfiguration"} {
					assert.Nil(t, rg.Input(p+alertOnly), "%s rule %s: a recording rule has no %s", tc.name, r.Record, alertOnly)
				}
			}
		})
	}
}
