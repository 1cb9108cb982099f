package components

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi-azure-native-sdk/alertsmanagement/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// recordingRulesLinux is Microsoft's three Linux recording rule groups, copied verbatim from
// github.com/Azure/prometheus-collector AddonArmTemplate/FullAzureMonitorMetricsProfile.json at
// commit 39583fd50b2f828f83cc18fc0cece9e3074f56db (the file's last change: 36a3549f, "enable ux
// recording rules"); the file's "source" field says the same. Onboarding managed Prometheus from
// the portal, the CLI, Microsoft's templates or AVM creates these groups: without them the
// portal's Kubernetes views and the built-in Grafana dashboards, which query the recorded series,
// show no data. The Windows groups of the template are left out (the cluster has no Windows pool).
//
//go:embed recording-rules-linux.json
var recordingRulesLinux []byte

// RecordingRule is one recording rule of Microsoft's default groups.
type RecordingRule struct {
	// Record is the name of the series the rule writes.
	Record string `json:"record"`
	// Expression is the PromQL it evaluates, verbatim from the template.
	Expression string `json:"expression"`
	// Labels are added to the recorded series (optional; only some Kubernetes rules have them).
	Labels map[string]string `json:"labels,omitempty"`
}

// RecordingRuleGroup is one of Microsoft's default recording rule groups, as the template
// declares it.
type RecordingRuleGroup struct {
	// Key names the group in Pulumi logical names (node, kubernetes, ux).
	Key string `json:"key"`
	// NamePrefix is the group name's start; the cluster's name follows it, as the template
	// concatenates them (note the spaces in "UXRecordingRulesRuleGroup - ").
	NamePrefix string `json:"namePrefix"`
	// Description is the template's description of the group.
	Description string `json:"description"`
	// Interval is the evaluation interval (ISO 8601).
	Interval string `json:"interval"`
	// Rules are the group's rules, in the template's order.
	Rules []RecordingRule `json:"rules"`
}

// RecordingRulesSource is where the embedded rules were copied from.
type RecordingRulesSource struct {
	// Repository, Path and Commit locate the template.
	Repository string `json:"repository"`
	Path       string `json:"path"`
	Commit     string `json:"commit"`
	// FileLastChangedIn is the last commit that changed the template before Commit.
	FileLastChangedIn string `json:"fileLastChangedIn"`
	// Note says what was copied.
	Note string `json:"note"`
}

type recordingRulesFile struct {
	Source RecordingRulesSource `json:"source"`
	Groups []RecordingRuleGroup `json:"groups"`
}

// LinuxRecordingRuleGroups decodes the embedded groups (strictly: an unknown field is an error)
// and checks each has a key, a name prefix, an interval and rules with a record and an expression.
func LinuxRecordingRuleGroups() (RecordingRulesSource, []RecordingRuleGroup, error) {
	var f recordingRulesFile
	dec := json.NewDecoder(bytes.NewReader(recordingRulesLinux))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return RecordingRulesSource{}, nil, fmt.Errorf("decoding the embedded recording rules: %w", err)
	}
	if len(f.Groups) == 0 {
		return RecordingRulesSource{}, nil, fmt.Errorf("the embedded recording rules have no group")
	}
	for i, g := range f.Groups {
		if g.Key == "" || g.NamePrefix == "" || g.Interval == "" || len(g.Rules) == 0 {
			return RecordingRulesSource{}, nil, fmt.Errorf("recording rule group %d (%q): key, namePrefix, interval and rules are required", i, g.NamePrefix)
		}
		for j, r := range g.Rules {
			if r.Record == "" || r.Expression == "" {
				return RecordingRulesSource{}, nil, fmt.Errorf("recording rule group %q rule %d: record and expression are required", g.NamePrefix, j)
			}
		}
	}
	return f.Source, f.Groups, nil
}

// recordingRuleGroup is one group's Pulumi key and arguments.
type recordingRuleGroup struct {
	Key  string
	Args *alertsmanagement.PrometheusRuleGroupArgs
}

// recordingRuleGroupsArgs is the pure builder of Microsoft's three Linux recording rule groups
// for the cluster, as the template creates them: named <prefix><cluster>, in the workspace's
// region, scoped to the workspace and the cluster with clusterName set (so the rules read only
// this cluster's series), evaluated every minute, enabled (the template leaves it to the API's
// default, true; its Bicep twin sets it), each rule with its record, expression and labels. Tags
// are the stack's (the template sets none).
func recordingRuleGroupsArgs(a *ManagedPrometheusArgs, workspaceID pulumi.StringInput) ([]recordingRuleGroup, error) {
	_, groups, err := LinuxRecordingRuleGroups()
	if err != nil {
		return nil, err
	}
	var out []recordingRuleGroup
	for _, g := range groups {
		rules := alertsmanagement.PrometheusRuleArray{}
		for _, r := range g.Rules {
			rule := &alertsmanagement.PrometheusRuleArgs{
				Record:     pulumi.String(r.Record),
				Expression: pulumi.String(r.Expression),
			}
			if len(r.Labels) > 0 {
				rule.Labels = pulumi.ToStringMap(r.Labels)
			}
			rules = append(rules, rule)
		}
		out = append(out, recordingRuleGroup{Key: g.Key, Args: &alertsmanagement.PrometheusRuleGroupArgs{
			ResourceGroupName: a.ResourceGroupName,
			Location:          a.Location,
			RuleGroupName:     pulumi.Sprintf("%s%s", g.NamePrefix, a.ClusterName),
			Description:       pulumi.String(g.Description),
			Scopes:            pulumi.StringArray{workspaceID, a.ClusterID},
			ClusterName:       a.ClusterName,
			Interval:          pulumi.String(g.Interval),
			Enabled:           pulumi.Bool(true),
			Rules:             rules,
			Tags:              tagsInput(a.Tags),
		}})
	}
	return out, nil
}
