package components

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/alertsmanagement/v3"
	"github.com/pulumi/pulumi-azure-native-sdk/monitor/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/app/observability"
)

// ManagedPrometheusType is the component's type token.
const ManagedPrometheusType = "aks-edw:monitoring:ManagedPrometheus"

// Managed Prometheus onboarding, in the shape of Microsoft's own templates: github.com/Azure/prometheus-collector
// AddonArmTemplate/FullAzureMonitorMetricsProfile.json and AddonBicepTemplate/FullAzureMonitorMetricsProfile.bicep
// (with nested_azuremonitormetrics_dcra_clusterResourceId.bicep), commit 39583fd5.
const (
	// PrometheusStream is the one stream the metrics add-on sends.
	PrometheusStream = string(monitor.KnownPrometheusForwarderDataSourceStreams_Microsoft_PrometheusMetrics)
	// PrometheusDataSourceName is the rule's prometheusForwarder data source name in the templates.
	PrometheusDataSourceName = "PrometheusDataSource"
	// PrometheusDestinationName is the rule's monitoring-account destination name in the templates.
	PrometheusDestinationName = "MonitoringAccount1"
	// PrometheusRuleInterval is how often the rule group is evaluated (ISO 8601, 1 to 15 minutes).
	PrometheusRuleInterval = "PT1M"
	// AlertTimeToResolve is how long an alert's condition must stay clear before Azure Monitor
	// resolves it, as in Microsoft's recommended alerts (AddonBicepTemplate/recommendedMetricAlerts.bicep).
	AlertTimeToResolve = "PT10M"
	// ActionGroupLocation is where action groups live: they are global resources.
	ActionGroupLocation = "global"
	// maxActionGroupShortName is Azure's limit on an action group's short name (shown in e-mails and SMS).
	maxActionGroupShortName = 12
	// Name limits in the templates: substring(..., 0, min(44, len)) for the endpoint and
	// min(64, len) for the rule.
	maxEndpointName = 44
	maxRuleName     = 64
)

// ManagedPrometheusArgs configures Azure Monitor managed Prometheus for one AKS cluster: where its
// metrics go, and the alerts evaluated on them.
type ManagedPrometheusArgs struct {
	// ResourceGroupName is required: every resource but the association lives there.
	ResourceGroupName pulumi.StringInput
	// Location is required: the region of the workspace, the data collection endpoint and rule,
	// and the rule group (their names carry it, as in Microsoft's templates).
	Location pulumi.StringInput
	// WorkspaceName is required: the Azure Monitor workspace's name.
	WorkspaceName pulumi.StringInput
	// ClusterID is required: the AKS cluster's resource id (the association's scope, and the rule
	// group's second scope).
	ClusterID pulumi.StringInput
	// ClusterName is required: the cluster's name (the rule group's clusterName and the names of
	// the endpoint, rule and association).
	ClusterName pulumi.StringInput
	// ClusterLocation is required: the cluster's region, which names the association (Microsoft's
	// templates use the cluster's region there, the workspace's region for the endpoint and rule).
	ClusterLocation pulumi.StringInput
	// RuleGroupName is required: the Prometheus rule group's name.
	RuleGroupName pulumi.StringInput
	// Rules are required (at least one): the alerting rules of the rule group.
	Rules []observability.Rule
	// AlertEmails are optional: one e-mail receiver each in an action group the alerts notify.
	// Empty (default): no action group, and the alerts fire in Azure Monitor without notifying.
	AlertEmails []string
	// ActionGroupName is required when AlertEmails is set: the action group's name.
	ActionGroupName pulumi.StringInput
	// ActionGroupShortName is required when AlertEmails is set: 1-12 characters, shown in the
	// notifications.
	ActionGroupShortName string
	// Tags are optional.
	Tags map[string]string
}

// ManagedPrometheus is an Azure Monitor workspace receiving the cluster's Prometheus metrics
// (through a data collection endpoint, rule and association), a Prometheus rule group with the
// workload's alerts, Microsoft's three default Linux recording rule groups (recordingrules.go)
// and, when e-mails are given, the action group the alerts notify. The cluster itself turns the
// metrics add-on on (ClusterSpec.ManagedPrometheus).
type ManagedPrometheus struct {
	pulumi.ResourceState

	// WorkspaceID is the Azure Monitor workspace's resource id.
	WorkspaceID pulumi.StringOutput
	// QueryEndpoint is the workspace's Prometheus query endpoint (metrics.prometheusQueryEndpoint).
	QueryEndpoint pulumi.StringOutput
	// RuleGroupID is the Prometheus rule group's resource id (the alerts).
	RuleGroupID pulumi.StringOutput
	// RecordingRuleGroupIDs are the resource ids of Microsoft's default recording rule groups
	// (node, kubernetes, ux).
	RecordingRuleGroupIDs pulumi.StringArrayOutput
	// ActionGroupID is the action group's resource id; empty when there are no alert e-mails.
	ActionGroupID pulumi.StringOutput
}

// ValidateAlertEmail returns why s is not a plain e-mail address (name@example.com), or nil.
func ValidateAlertEmail(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("%q is not an e-mail address (name@example.com)", s)
	}
	_, domain, _ := strings.Cut(s, "@")
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return fmt.Errorf("%q is not an e-mail address: the domain %q has no dot (name@example.com)", s, domain)
	}
	return nil
}

func (a *ManagedPrometheusArgs) validate() error {
	if a == nil {
		return errors.New("args are required")
	}
	errs := missing(
		arg{"ResourceGroupName", a.ResourceGroupName != nil},
		arg{"Location", a.Location != nil},
		arg{"WorkspaceName", a.WorkspaceName != nil},
		arg{"ClusterID", a.ClusterID != nil},
		arg{"ClusterName", a.ClusterName != nil},
		arg{"ClusterLocation", a.ClusterLocation != nil},
		arg{"RuleGroupName", a.RuleGroupName != nil},
	)
	if len(a.Rules) == 0 {
		errs = append(errs, errors.New("at least one rule is required in Rules"))
	}
	for i, r := range a.Rules {
		if r.Alert == "" || r.Expr == "" {
			errs = append(errs, fmt.Errorf("rule %d: Alert and Expr are required", i))
		}
		if r.For < 0 {
			errs = append(errs, fmt.Errorf("rule %d (%s): For must not be negative", i, r.Alert))
		}
	}
	for _, e := range a.AlertEmails {
		if err := ValidateAlertEmail(e); err != nil {
			errs = append(errs, fmt.Errorf("AlertEmails: %w", err))
		}
	}
	if len(a.AlertEmails) > 0 {
		if a.ActionGroupName == nil {
			errs = append(errs, errors.New("ActionGroupName is required when AlertEmails is set"))
		}
		if n := len(a.ActionGroupShortName); n < 1 || n > maxActionGroupShortName {
			errs = append(errs, fmt.Errorf("ActionGroupShortName %q must be 1-%d characters", a.ActionGroupShortName, maxActionGroupShortName))
		}
	}
	return errors.Join(errs...)
}

// prometheusName is MSProm-<region>-<cluster>, cut to max characters when max > 0, as Microsoft's
// templates name the data collection endpoint (44), the rule (64) and the association (not cut).
// A cut that ends on "-" drops it, as AVM does: Microsoft's templates keep it, and a name ending
// in a hyphen is one Azure's naming rules commonly refuse (docs/cloud-notes.md).
func prometheusName(region, cluster string, max int) string {
	n := "MSProm-" + region + "-" + cluster
	if max > 0 && len(n) > max {
		n = strings.TrimRight(n[:max], "-")
	}
	return n
}

// prometheusNameOutput applies prometheusName to outputs.
func prometheusNameOutput(region, cluster pulumi.StringInput, max int) pulumi.StringOutput {
	return pulumi.All(region, cluster).ApplyT(func(v []any) string {
		return prometheusName(v[0].(string), v[1].(string), max)
	}).(pulumi.StringOutput)
}

// monitorWorkspaceArgs is the pure builder of the Azure Monitor workspace (Microsoft.Monitor/accounts),
// which stores the metrics: billed per sample ingested and queried, no storage charge, 18 months.
func monitorWorkspaceArgs(a *ManagedPrometheusArgs) *monitor.AzureMonitorWorkspaceArgs {
	return &monitor.AzureMonitorWorkspaceArgs{
		ResourceGroupName:         a.ResourceGroupName,
		Location:                  a.Location,
		AzureMonitorWorkspaceName: a.WorkspaceName,
		Tags:                      tagsInput(a.Tags),
	}
}

// dataCollectionEndpointArgs is the pure builder of the data collection endpoint, as the
// templates create it: kind Linux, no other properties.
func dataCollectionEndpointArgs(a *ManagedPrometheusArgs) *monitor.DataCollectionEndpointArgs {
	return &monitor.DataCollectionEndpointArgs{
		ResourceGroupName:          a.ResourceGroupName,
		Location:                   a.Location,
		DataCollectionEndpointName: prometheusNameOutput(a.Location, a.ClusterName, maxEndpointName),
		Kind:                       monitor.KnownDataCollectionEndpointResourceKindLinux,
		Tags:                       tagsInput(a.Tags),
	}
}

// prometheusRuleArgs is the pure builder of the data collection rule: the add-on's Prometheus
// stream, forwarded through the endpoint into the workspace (properties as in the templates).
func prometheusRuleArgs(a *ManagedPrometheusArgs, endpointID, workspaceID pulumi.StringInput) *monitor.DataCollectionRuleArgs {
	streams := pulumi.StringArray{pulumi.String(PrometheusStream)}
	return &monitor.DataCollectionRuleArgs{
		ResourceGroupName:        a.ResourceGroupName,
		Location:                 a.Location,
		DataCollectionRuleName:   prometheusNameOutput(a.Location, a.ClusterName, maxRuleName),
		Kind:                     monitor.KnownDataCollectionRuleResourceKindLinux,
		Description:              pulumi.String("DCR for Azure Monitor Metrics Profile (Managed Prometheus)"),
		DataCollectionEndpointId: endpointID,
		DataSources: &monitor.DataCollectionRuleDataSourcesArgs{
			PrometheusForwarder: monitor.PrometheusForwarderDataSourceArray{
				&monitor.PrometheusForwarderDataSourceArgs{
					Name:               pulumi.String(PrometheusDataSourceName),
					Streams:            streams,
					LabelIncludeFilter: pulumi.StringMap{},
				},
			},
		},
		Destinations: &monitor.DataCollectionRuleDestinationsArgs{
			MonitoringAccounts: monitor.MonitoringAccountDestinationArray{
				&monitor.MonitoringAccountDestinationArgs{
					AccountResourceId: workspaceID,
					Name:              pulumi.String(PrometheusDestinationName),
				},
			},
		},
		DataFlows: monitor.DataFlowArray{
			&monitor.DataFlowArgs{
				Streams:      streams,
				Destinations: pulumi.StringArray{pulumi.String(PrometheusDestinationName)},
			},
		},
		Tags: tagsInput(a.Tags),
	}
}

// prometheusAssociationArgs associates the rule with the cluster (an extension resource of the
// cluster, deleted with it), named MSProm-<cluster region>-<cluster> as in the templates.
func prometheusAssociationArgs(a *ManagedPrometheusArgs, ruleID pulumi.StringInput) *monitor.DataCollectionRuleAssociationArgs {
	return &monitor.DataCollectionRuleAssociationArgs{
		ResourceUri:          a.ClusterID,
		AssociationName:      prometheusNameOutput(a.ClusterLocation, a.ClusterName, 0),
		DataCollectionRuleId: ruleID,
		Description:          pulumi.String("Association of data collection rule. Deleting this association will break the data collection for this AKS Cluster."),
	}
}

// actionGroupArgs is the pure builder of the action group: one e-mail receiver per address, with
// the common alert schema; nil when there is no address (no action group then).
func actionGroupArgs(a *ManagedPrometheusArgs) *monitor.ActionGroupArgs {
	if len(a.AlertEmails) == 0 {
		return nil
	}
	receivers := monitor.EmailReceiverArray{}
	for i, e := range a.AlertEmails {
		receivers = append(receivers, &monitor.EmailReceiverArgs{
			// Names must be unique within the action group.
			Name:                 pulumi.Sprintf("email-%d", i+1),
			EmailAddress:         pulumi.String(e),
			UseCommonAlertSchema: pulumi.Bool(true),
		})
	}
	return &monitor.ActionGroupArgs{
		ResourceGroupName: a.ResourceGroupName,
		ActionGroupName:   a.ActionGroupName,
		Location:          pulumi.String(ActionGroupLocation),
		Enabled:           pulumi.Bool(true),
		GroupShortName:    pulumi.String(a.ActionGroupShortName),
		EmailReceivers:    receivers,
		Tags:              tagsInput(a.Tags),
	}
}

// alertRuleArgs is the pure builder of one alerting rule, in the format of Microsoft's
// recommended alerts (recommendedMetricAlerts.bicep): ISO 8601 "for", the severity both as
// Azure's severity and as the rule's severity label (plus needs=keda-operator-metrics on the
// rules that fire only where KEDA's metrics are scraped), auto-resolution after
// AlertTimeToResolve, and the action group when there is one (nil: no actions).
func alertRuleArgs(r observability.Rule, actionGroupID pulumi.StringInput) *alertsmanagement.PrometheusRuleArgs {
	var forDuration pulumi.StringPtrInput
	if r.For > 0 {
		forDuration = pulumi.String(observability.ISODuration(r.For))
	}
	var actions alertsmanagement.PrometheusRuleGroupActionArrayInput
	if actionGroupID != nil {
		actions = alertsmanagement.PrometheusRuleGroupActionArray{
			&alertsmanagement.PrometheusRuleGroupActionArgs{ActionGroupId: actionGroupID},
		}
	}
	return &alertsmanagement.PrometheusRuleArgs{
		Alert:      pulumi.String(r.Alert),
		Expression: pulumi.String(r.Expr),
		For:        forDuration,
		Severity:   pulumi.Int(int(r.Severity)),
		Enabled:    pulumi.Bool(true),
		Labels:     pulumi.ToStringMap(r.Labels()),
		Annotations: pulumi.StringMap{
			"summary":     pulumi.String(r.Summary),
			"description": pulumi.String(r.Action),
		},
		ResolveConfiguration: &alertsmanagement.PrometheusRuleResolveConfigurationArgs{
			AutoResolved:  pulumi.Bool(true),
			TimeToResolve: pulumi.String(AlertTimeToResolve),
		},
		Actions: actions,
	}
}

// ruleGroupArgs is the pure builder of the Prometheus rule group.
//
// Scopes: the API reference of 2023-03-01 (and the SDK's doc comment) says "currently limited to
// creating with one scope", yet Microsoft's own templates scope their rule groups to
// [workspace id, cluster id] with clusterName set (prometheus-collector
// AddonBicepTemplate/recommendedMetricAlerts.bicep and the recording-rule groups of
// FullAzureMonitorMetricsProfile.json), and so does the API's own example for this version
// (azure-rest-api-specs, alertsmanagement 2023-03-01 createOrUpdateClusterCentricRuleGroup.json).
// We follow the templates: the workspace (where the metrics are) and the cluster (which ties
// the group to it in the portal, beside clusterName, which filters the data to its cluster).
func ruleGroupArgs(a *ManagedPrometheusArgs, workspaceID, actionGroupID pulumi.StringInput) *alertsmanagement.PrometheusRuleGroupArgs {
	rules := alertsmanagement.PrometheusRuleArray{}
	for _, r := range a.Rules {
		rules = append(rules, alertRuleArgs(r, actionGroupID))
	}
	return &alertsmanagement.PrometheusRuleGroupArgs{
		ResourceGroupName: a.ResourceGroupName,
		Location:          a.Location,
		RuleGroupName:     a.RuleGroupName,
		Description:       pulumi.String("Alerts of the queue consumer workload (app/observability)"),
		Scopes:            pulumi.StringArray{workspaceID, a.ClusterID},
		ClusterName:       a.ClusterName,
		Interval:          pulumi.String(PrometheusRuleInterval),
		Enabled:           pulumi.Bool(true),
		Rules:             rules,
		Tags:              tagsInput(a.Tags),
	}
}

// NewManagedPrometheus creates the Azure Monitor workspace, the data collection endpoint and rule
// that carry the cluster's Prometheus metrics into it, the rule's association with the cluster,
// the action group (only with alert e-mails), the rule group with the alerts, and Microsoft's
// three default Linux recording rule groups. Like the alerts, the recording groups need no
// ordering after the association: they evaluate whatever the workspace holds.
//
// The association is an extension resource of the cluster, so it follows the cluster (which
// turns the metrics add-on on as it is created, like `az aks create --enable-azure-monitor-metrics`);
// Microsoft's ARM template, written for an existing cluster, associates first and sets the
// cluster's azureMonitorProfile last.
func NewManagedPrometheus(ctx *pulumi.Context, name string, args *ManagedPrometheusArgs, opts ...pulumi.ResourceOption) (*ManagedPrometheus, error) {
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("managed Prometheus %q: %w", name, err)
	}
	// The recording rules are embedded data: a broken copy fails before anything is registered.
	if _, _, err := LinuxRecordingRuleGroups(); err != nil {
		return nil, fmt.Errorf("managed Prometheus %q: %w", name, err)
	}
	p := &ManagedPrometheus{}
	if err := ctx.RegisterComponentResource(ManagedPrometheusType, name, p, opts...); err != nil {
		return nil, fmt.Errorf("registering managed Prometheus %q: %w", name, err)
	}
	workspace, err := monitor.NewAzureMonitorWorkspace(ctx, name+"-workspace", monitorWorkspaceArgs(args), pulumi.Parent(p))
	if err != nil {
		return nil, fmt.Errorf("creating Azure Monitor workspace %q: %w", name, err)
	}
	workspaceID := workspace.ID().ToStringOutput()
	endpoint, err := monitor.NewDataCollectionEndpoint(ctx, name+"-endpoint", dataCollectionEndpointArgs(args), pulumi.Parent(p))
	if err != nil {
		return nil, fmt.Errorf("creating Prometheus data collection endpoint %q: %w", name, err)
	}
	rule, err := monitor.NewDataCollectionRule(ctx, name+"-rule",
		prometheusRuleArgs(args, endpoint.ID().ToStringOutput(), workspaceID), pulumi.Parent(p))
	if err != nil {
		return nil, fmt.Errorf("creating Prometheus data collection rule %q: %w", name, err)
	}
	if _, err := monitor.NewDataCollectionRuleAssociation(ctx, name+"-association",
		prometheusAssociationArgs(args, rule.ID().ToStringOutput()), pulumi.Parent(p)); err != nil {
		return nil, fmt.Errorf("associating the Prometheus data collection rule with the cluster %q: %w", name, err)
	}

	p.ActionGroupID = pulumi.String("").ToStringOutput()
	var actionGroupID pulumi.StringInput
	if ag := actionGroupArgs(args); ag != nil {
		group, err := monitor.NewActionGroup(ctx, name+"-action-group", ag, pulumi.Parent(p))
		if err != nil {
			return nil, fmt.Errorf("creating alert action group %q: %w", name, err)
		}
		p.ActionGroupID = group.ID().ToStringOutput()
		actionGroupID = p.ActionGroupID
	}
	group, err := alertsmanagement.NewPrometheusRuleGroup(ctx, name+"-alerts",
		ruleGroupArgs(args, workspaceID, actionGroupID), pulumi.Parent(p))
	if err != nil {
		return nil, fmt.Errorf("creating Prometheus rule group %q: %w", name, err)
	}
	recording, err := recordingRuleGroupsArgs(args, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("managed Prometheus %q: %w", name, err)
	}
	recordingIDs := pulumi.StringArray{}
	for _, g := range recording {
		rg, err := alertsmanagement.NewPrometheusRuleGroup(ctx, name+"-recording-"+g.Key, g.Args, pulumi.Parent(p))
		if err != nil {
			return nil, fmt.Errorf("creating the %s recording rule group %q: %w", g.Key, name, err)
		}
		recordingIDs = append(recordingIDs, rg.ID().ToStringOutput())
	}

	p.WorkspaceID = workspaceID
	p.QueryEndpoint = workspace.Metrics.PrometheusQueryEndpoint()
	p.RuleGroupID = group.ID().ToStringOutput()
	p.RecordingRuleGroupIDs = recordingIDs.ToStringArrayOutput()
	if err := ctx.RegisterResourceOutputs(p, pulumi.Map{
		"workspaceId": p.WorkspaceID, "queryEndpoint": p.QueryEndpoint,
		"ruleGroupId": p.RuleGroupID, "actionGroupId": p.ActionGroupID,
		"recordingRuleGroupIds": p.RecordingRuleGroupIDs,
	}); err != nil {
		return nil, fmt.Errorf("registering managed Prometheus %q outputs: %w", name, err)
	}
	return p, nil
}
