package components

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/containerservice/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The planned maintenance configurations AKS knows by name: any other name is refused, and each
// applies to one kind of upgrade (learn.microsoft.com aks/planned-maintenance).
const (
	// MaintenanceAutoUpgrade schedules the cluster auto-upgrades of the upgrade channel.
	MaintenanceAutoUpgrade = "aksManagedAutoUpgradeSchedule"
	// MaintenanceNodeOSUpgrade schedules the node OS upgrades of the node OS upgrade channel.
	MaintenanceNodeOSUpgrade = "aksManagedNodeOSUpgradeSchedule"
)

// MaintenanceWindow is a weekly window in which AKS may upgrade the cluster and its nodes' OS.
type MaintenanceWindow struct {
	// DayOfWeek is the day the window opens: Monday ... Sunday.
	DayOfWeek string `json:"dayOfWeek"`
	// StartTime is the time the window opens, "HH:mm" in UtcOffset.
	StartTime string `json:"startTime"`
	// DurationHours is the window's length, 4 to 24 (AKS's bounds).
	DurationHours int `json:"durationHours"`
	// UtcOffset is StartTime's offset from UTC, "+HH:mm" or "-HH:mm"; empty is "+00:00".
	UtcOffset string `json:"utcOffset"`
	// IntervalWeeks is the number of weeks between windows, 1 to 4; 0 means 1.
	IntervalWeeks int `json:"intervalWeeks"`
}

var (
	startTimeRe = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	utcOffsetRe = regexp.MustCompile(`^[+-](0[0-9]|1[0-4]):[0-5][0-9]$`)
	weekDays    = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
)

// Validate checks the window against the bounds of AKS's API, naming each bad field.
func (w MaintenanceWindow) Validate() error {
	var errs []error
	if !slices.Contains(weekDays, w.DayOfWeek) {
		errs = append(errs, fmt.Errorf("dayOfWeek %q: want one of %v", w.DayOfWeek, weekDays))
	}
	if !startTimeRe.MatchString(w.StartTime) {
		errs = append(errs, fmt.Errorf("startTime %q: want HH:mm, 00:00 to 23:59", w.StartTime))
	}
	if w.DurationHours < 4 || w.DurationHours > 24 {
		errs = append(errs, fmt.Errorf("durationHours %d: AKS takes 4 to 24", w.DurationHours))
	}
	if w.UtcOffset != "" && !utcOffsetRe.MatchString(w.UtcOffset) {
		errs = append(errs, fmt.Errorf("utcOffset %q: want +HH:mm or -HH:mm", w.UtcOffset))
	}
	if w.IntervalWeeks < 0 || w.IntervalWeeks > 4 {
		errs = append(errs, fmt.Errorf("intervalWeeks %d: AKS takes 1 to 4", w.IntervalWeeks))
	}
	return errors.Join(errs...)
}

// maintenanceSchedules names the maintenance configurations a window becomes: the auto-upgrade
// schedule when an upgrade channel moves the cluster, the node OS schedule when the node OS
// channel is one that a window governs (NodeImage, SecurityPatch; None and Unmanaged ignore it).
func maintenanceSchedules(spec ClusterSpec) []string {
	if spec.MaintenanceWindow == nil {
		return nil
	}
	var names []string
	switch containerservice.UpgradeChannel(spec.UpgradeChannel) {
	case "", containerservice.UpgradeChannelNone:
	default:
		names = append(names, MaintenanceAutoUpgrade)
	}
	switch containerservice.NodeOSUpgradeChannel(spec.NodeOSUpgradeChannel) {
	case containerservice.NodeOSUpgradeChannelNodeImage, containerservice.NodeOSUpgradeChannelSecurityPatch:
		names = append(names, MaintenanceNodeOSUpgrade)
	}
	return names
}

// maintenanceConfigurationArgs is the pure builder of one planned maintenance configuration:
// the weekly window, no start date (a start date in the past makes later updates fail).
func maintenanceConfigurationArgs(a *ClusterArgs, clusterName pulumi.StringInput, configName string, w MaintenanceWindow) *containerservice.MaintenanceConfigurationArgs {
	interval := w.IntervalWeeks
	if interval == 0 {
		interval = 1
	}
	return &containerservice.MaintenanceConfigurationArgs{
		ResourceGroupName: a.ResourceGroupName,
		ResourceName:      clusterName,
		ConfigName:        pulumi.String(configName),
		MaintenanceWindow: &containerservice.MaintenanceWindowArgs{
			Schedule: &containerservice.ScheduleArgs{
				Weekly: &containerservice.WeeklyScheduleArgs{
					DayOfWeek:     pulumi.String(w.DayOfWeek),
					IntervalWeeks: pulumi.Int(interval),
				},
			},
			DurationHours: pulumi.Int(w.DurationHours),
			StartTime:     pulumi.String(w.StartTime),
			UtcOffset:     optString(w.UtcOffset),
		},
	}
}

// DisruptionBudget is one of a Karpenter NodePool's spec.disruption.budgets.
type DisruptionBudget struct {
	// Nodes is how many nodes (or what percentage) may be disrupted at once while it is active.
	Nodes string
	// Reasons limits it to these disruption reasons (Drifted, Underutilized, Empty); empty: all.
	Reasons []string
	// Schedule (cron, UTC) and Duration make it active from each cron hit for Duration; both
	// empty: always active.
	Schedule, Duration string
}

// DisruptionBudgets keeps Karpenter's voluntary disruption of the app pool (replacing drifted
// nodes, such as those a new node image drifts, and consolidating underutilized ones, which
// evicts their pods) inside the maintenance window: a budget of 0 nodes for those reasons from
// the window's end until its next start, and Karpenter's own default (10%) otherwise, which
// also rate-limits the window and lets empty nodes go at any time (they hold no pods).
// Karpenter takes the most restrictive active budget and has no "except", hence the complement
// (karpenter.sh disruption docs; kubernetes-sigs/karpenter#2218). Cron schedules are UTC and
// weekly, so a window every 2-4 weeks (intervalWeeks) opens the budget every week at its slot.
// nil (no window): Karpenter's default. The window is assumed valid (Validate).
func DisruptionBudgets(w *MaintenanceWindow) []DisruptionBudget {
	if w == nil {
		return nil
	}
	day := slices.Index(weekDays, w.DayOfWeek) // Monday = 0
	var h, m, oh, om int
	_, _ = fmt.Sscanf(w.StartTime, "%d:%d", &h, &m)
	sign := 1
	if strings.HasPrefix(w.UtcOffset, "-") {
		sign = -1
	}
	if w.UtcOffset != "" {
		_, _ = fmt.Sscanf(w.UtcOffset[1:], "%d:%d", &oh, &om)
	}
	const week = 7 * 24 * 60
	// Minutes since Monday 00:00 UTC of the window's end.
	end := ((day*24*60+h*60+m-sign*(oh*60+om)+w.DurationHours*60)%week + week) % week
	cronDay := (end/(24*60) + 1) % 7 // cron: Sunday = 0
	return []DisruptionBudget{
		{
			Nodes: "0", Reasons: []string{"Drifted", "Underutilized"},
			Schedule: fmt.Sprintf("%d %d * * %d", end%60, end/60%24, cronDay),
			Duration: fmt.Sprintf("%dh", 7*24-w.DurationHours),
		},
		{Nodes: "10%"},
	}
}
