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

	"github.com/aks-edw/aks-edw/internal/observability"
	"github.com/aks-edw/aks-edw/internal/pulumitest"
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
	return observability.Params{Namespace: "aqs-demo", Scaler: "scaler", QueueName: "q1", MaxReplicas: 5, QueueLength: 4000, BacklogFor: 15 * time.Minute}
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
	for _, tc := range []struct {
		name        string
		rule        observability.Rule
		actionGroup pulumi.StringInput
		wantFor     pulumi.StringPtrInput
		wantActions int
	}{
		{"no for, no action group", base, nil, nil, 0},
		{"for, action group", withFor, pulumi.String("/ag"), pulumi.String("PT1H30M"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := alertRuleArgs(tc.rule, tc.actionGroup)
			assert.Equal(t, pulumi.String(tc.rule.Alert), r.Alert)
			assert.Equal(t, pulumi.String(tc.rule.Expr), r.Expression)
			assert.Equal(t, tc.wantFor, r.For)
			assert.Equal(t, pulumi.Int(1), r.Severity)
			assert.Equal(t, pulumi.StringMap{"severity": pulumi.String("error")}, r.Labels)
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

			amw, dce, dcr, dcra, rg := m.One(t, tAMW), m.One(t, tDCE), m.One(t, tPromDCR), m.One(t, tPromDCRA), m.One(t, tRuleGroup)
			assert.Equal(t, "amw1", amw.Input("azureMonitorWorkspaceName"))
			for _, r := range []*pulumitest.Resource{amw, dce, dcr, rg} {
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
				assert.Len(t, m.Resources(), 6, "component, workspace, endpoint, rule, association, rule group")
				for i := range rules {
					assert.Nil(t, rg.Input("rules."+strconv.Itoa(i)+".actions"), "rule %d has no actions", i)
				}
				return
			}
			require.Len(t, groups, 1)
			ag := groups[0]
			assert.Len(t, m.Resources(), 7)
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
	rg := m.One(t, tRuleGroup)
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
		assert.Equal(t, r.Summary, rg.Input(p+"annotations.summary"), r.Alert)
		assert.Equal(t, r.Action, rg.Input(p+"annotations.description"), r.Alert)
		assert.Equal(t, true, rg.Input(p+"resolveConfiguration.autoResolved"), r.Alert)
		assert.Equal(t, "PT10M", rg.Input(p+"resolveConfiguration.timeToResolve"), r.Alert)
	}
}
