package infra

import (
	"fmt"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/aks-edw/aks-edw/app/observability"
	"github.com/aks-edw/aks-edw/components"
)

// Bounds of backlogAlertFor: at least one rule evaluation (the rule group runs every minute), at
// most a day (a backlog alert later than that tells nobody anything in time).
const (
	MinBacklogAlertFor = time.Minute
	MaxBacklogAlertFor = 24 * time.Hour
)

// BacklogAlertDuration is backlogAlertFor parsed; 0 when it does not parse (Validate reports it).
func (c Config) BacklogAlertDuration() time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(c.BacklogAlertFor))
	if err != nil {
		return 0
	}
	return d
}

// AlertParams are the alert rules' parameters from the workload's settings: the scaler, its
// maximum replicas (or jobs) and messages per replica (or job) of the configured scale mode,
// the queue, and backlogAlertFor.
func (c Config) AlertParams() observability.Params {
	s := c.Consumer
	p := observability.Params{
		Namespace:   s.Namespace,
		Scaler:      s.ScaledObjectName,
		Container:   components.ConsumerContainerName,
		QueueName:   c.QueueName,
		MaxReplicas: s.MaxReplicas,
		QueueLength: s.QueueLength,
		BacklogFor:  c.BacklogAlertDuration(),
	}
	if s.ScaleMode == components.ScaleModeScaledJob {
		p.Scaler, p.MaxReplicas, p.QueueLength = s.ScaledJobName, s.JobMaxReplicas, s.JobQueueLength
	}
	return p
}

// monitoringProblems checks managedPrometheus, alertEmails and backlogAlertFor.
func (c Config) monitoringProblems() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.AlertEmails) > 0 && !c.ManagedPrometheus {
		bad("alertEmails", "is set (%d address(es)) while %s:managedPrometheus is false: the alerts, and the action group "+
			"that e-mails them, exist only with managed Prometheus; set managedPrometheus to true or remove alertEmails",
			len(c.AlertEmails), Project)
	}
	seen := map[string]bool{}
	for _, e := range c.AlertEmails {
		if err := components.ValidateAlertEmail(e); err != nil {
			bad("alertEmails", "%v", err)
			continue
		}
		if k := strings.ToLower(e); seen[k] {
			bad("alertEmails", "%q is listed twice", e)
		} else {
			seen[k] = true
		}
	}
	d, err := time.ParseDuration(strings.TrimSpace(c.BacklogAlertFor))
	switch {
	case err != nil:
		bad("backlogAlertFor", "%q is not a duration (e.g. 15m, 1h30m)", c.BacklogAlertFor)
	case d < MinBacklogAlertFor || d > MaxBacklogAlertFor:
		bad("backlogAlertFor", "%s must be between %s and %s", d, MinBacklogAlertFor, MaxBacklogAlertFor)
	case d%time.Second != 0:
		bad("backlogAlertFor", "%s must be a whole number of seconds (the alert's ISO 8601 duration has no fractions)", d)
	}
	return errs
}

// deployMonitoring creates managed Prometheus for the cluster when managedPrometheus is on, and
// returns nil when it is off (nothing is created then).
func deployMonitoring(ctx *pulumi.Context, cfg Config, names *Names, rgName pulumi.StringInput, cluster *components.Cluster) (*components.ManagedPrometheus, error) {
	if !cfg.ManagedPrometheus {
		return nil, nil
	}
	params := cfg.AlertParams()
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("alert rules: %w", err)
	}
	return components.NewManagedPrometheus(ctx, "prometheus", &components.ManagedPrometheusArgs{
		ResourceGroupName:    rgName,
		Location:             pulumi.String(cfg.Location),
		WorkspaceName:        names.MonitorWorkspace,
		ClusterID:            cluster.ManagedCluster.ID().ToStringOutput(),
		ClusterName:          cluster.Name,
		ClusterLocation:      cluster.ManagedCluster.Location,
		RuleGroupName:        names.AlertRuleGroup,
		Rules:                observability.Rules(params),
		AlertEmails:          cfg.AlertEmails,
		ActionGroupName:      names.ActionGroup,
		ActionGroupShortName: ActionGroupShortName(cfg.Prefix),
		Tags:                 cfg.Tags,
	})
}
