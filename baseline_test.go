package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
)

const tMaintenance = "azure-native:containerservice:MaintenanceConfiguration"

// Issue 17 item 3: prod upgrades only in its weekly window, for both of its channels (stable and
// SecurityPatch); dev sets no window and gets no configuration.
func TestMaintenanceWindows(t *testing.T) {
	m := runStack(t, "prod", loadStackConfig(t, "prod")).mocks
	mc := m.One(t, "azure-native:containerservice:ManagedCluster")
	configs := m.ByType(tMaintenance)
	require.Len(t, configs, 2, "prod: one configuration per upgrade channel")
	var names []any
	for _, c := range configs {
		names = append(names, c.Input("configName"))
		assert.Equal(t, mc.Output("name"), c.Input("resourceName"), "on the stack's cluster")
		assert.Equal(t, "Sunday", c.Input("maintenanceWindow.schedule.weekly.dayOfWeek"))
		assert.Equal(t, 1.0, c.Input("maintenanceWindow.schedule.weekly.intervalWeeks"))
		assert.Equal(t, "02:00", c.Input("maintenanceWindow.startTime"))
		assert.Equal(t, 4.0, c.Input("maintenanceWindow.durationHours"))
		assert.Equal(t, "+00:00", c.Input("maintenanceWindow.utcOffset"))
	}
	assert.ElementsMatch(t, []any{components.MaintenanceAutoUpgrade, components.MaintenanceNodeOSUpgrade}, names)

	dev := runStack(t, "dev", loadStackConfig(t, "dev")).mocks
	assert.Empty(t, dev.ByType(tMaintenance), "dev sets no window")
}
