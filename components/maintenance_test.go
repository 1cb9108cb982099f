package components

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sundayWindow() MaintenanceWindow {
	return MaintenanceWindow{DayOfWeek: "Sunday", StartTime: "02:00", DurationHours: 4, UtcOffset: "+01:00", IntervalWeeks: 2}
}

// Each bound of AKS's API is refused with the field's name; a valid window passes.
func TestMaintenanceWindowValidate(t *testing.T) {
	require.NoError(t, sundayWindow().Validate())
	noOffset := sundayWindow()
	noOffset.UtcOffset, noOffset.IntervalWeeks = "", 0
	require.NoError(t, noOffset.Validate(), "utcOffset and intervalWeeks are optional")
	for _, tc := range []struct {
		name string
		edit func(w *MaintenanceWindow)
		want string
	}{
		{"day", func(w *MaintenanceWindow) { w.DayOfWeek = "sunday" }, `dayOfWeek "sunday"`},
		{"time", func(w *MaintenanceWindow) { w.StartTime = "2:00" }, `startTime "2:00"`},
		{"hour 24", func(w *MaintenanceWindow) { w.StartTime = "24:00" }, `startTime "24:00"`},
		{"short", func(w *MaintenanceWindow) { w.DurationHours = 3 }, "durationHours 3: AKS takes 4 to 24"},
		{"long", func(w *MaintenanceWindow) { w.DurationHours = 25 }, "durationHours 25"},
		{"offset", func(w *MaintenanceWindow) { w.UtcOffset = "+1:00" }, `utcOffset "+1:00"`},
		{"interval", func(w *MaintenanceWindow) { w.IntervalWeeks = 5 }, "intervalWeeks 5: AKS takes 1 to 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := sundayWindow()
			tc.edit(&w)
			err := w.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A window becomes one configuration per channel that upgrades something.
func TestMaintenanceSchedules(t *testing.T) {
	w := sundayWindow()
	for _, tc := range []struct {
		upgrade, nodeOS string
		want            []string
	}{
		{"stable", "SecurityPatch", []string{MaintenanceAutoUpgrade, MaintenanceNodeOSUpgrade}},
		{"patch", "NodeImage", []string{MaintenanceAutoUpgrade, MaintenanceNodeOSUpgrade}},
		{"none", "NodeImage", []string{MaintenanceNodeOSUpgrade}},
		{"", "Unmanaged", nil},
		{"rapid", "None", []string{MaintenanceAutoUpgrade}},
	} {
		assert.Equal(t, tc.want, maintenanceSchedules(ClusterSpec{UpgradeChannel: tc.upgrade, NodeOSUpgradeChannel: tc.nodeOS, MaintenanceWindow: &w}), "%s/%s", tc.upgrade, tc.nodeOS)
	}
	assert.Nil(t, maintenanceSchedules(ClusterSpec{UpgradeChannel: "stable", NodeOSUpgradeChannel: "NodeImage"}), "no window, no configuration")
}

// The cluster component creates both configurations, weekly, on the cluster, with no start date;
// an invalid window fails the component with the field named.
func TestClusterMaintenanceConfigurations(t *testing.T) {
	args := clusterTestArgs()
	w := sundayWindow()
	args.Spec.MaintenanceWindow = &w
	m := runAzure(t, func(ctx *pulumi.Context) error { _, err := NewCluster(ctx, "c", args); return err })
	mc := m.One(t, "azure-native:containerservice:ManagedCluster")
	configs := m.ByType("azure-native:containerservice:MaintenanceConfiguration")
	require.Len(t, configs, 2)
	for i, name := range []string{MaintenanceAutoUpgrade, MaintenanceNodeOSUpgrade} {
		c := configs[i]
		assert.Equal(t, name, c.Input("configName"))
		assert.Equal(t, mc.Output("name"), c.Input("resourceName"))
		assert.Equal(t, "rg", c.Input("resourceGroupName"))
		assert.Equal(t, "Sunday", c.Input("maintenanceWindow.schedule.weekly.dayOfWeek"))
		assert.Equal(t, 2.0, c.Input("maintenanceWindow.schedule.weekly.intervalWeeks"))
		assert.Equal(t, 4.0, c.Input("maintenanceWindow.durationHours"))
		assert.Equal(t, "02:00", c.Input("maintenanceWindow.startTime"))
		assert.Equal(t, "+01:00", c.Input("maintenanceWindow.utcOffset"))
		assert.Nil(t, c.Input("maintenanceWindow.startDate"), "a start date in the past breaks later updates")
	}

	bad := sundayWindow()
	bad.DurationHours = 2
	args.Spec.MaintenanceWindow = &bad
	err := runAzureErr(func(ctx *pulumi.Context) error { _, err := NewCluster(ctx, "c", args); return err })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Spec.MaintenanceWindow: durationHours 2")
}
