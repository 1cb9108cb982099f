package infra

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/components"
)

const testRepository = "https://git.example.com/your-org/aks-edw.git"

// validConfig is the defaults plus the one key without a default that building the image needs.
func validConfig() Config {
	c := DefaultConfig()
	c.ImageSourceRepository = testRepository
	return c
}

// The defaults are valid but for the image source, which only the user knows: one error names
// imageSourceRepository and image; either one set makes the config valid.
func TestDefaultConfigNeedsTheImageSource(t *testing.T) {
	err := DefaultConfig().Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "(1 problem(s))")
	assert.Contains(t, err.Error(), "aks-edw:imageSourceRepository is required when image is empty")
	assert.Contains(t, err.Error(), "or set image to")
	require.NoError(t, validConfig().Validate())
	c := DefaultConfig()
	c.Consumer.Image = "ghcr.io/org/consumer:1.0"
	require.NoError(t, c.Validate())
}

// Each bad value yields an error that names its key; all problems are reported at once.
func TestValidateNamesEveryKey(t *testing.T) {
	cases := []struct {
		key    string
		mutate func(*Config)
	}{
		{"storageAccountName", func(c *Config) { c.StorageAccountName = "thisstorageaccountnameistoolong" }},
		{"prefix", func(c *Config) { c.Prefix = "aprefixthatistoolong" }},
		{"prefix", func(c *Config) { c.Prefix = "Bad-Prefix" }},
		{"storageSku", func(c *Config) { c.StorageSku = "Premium_XYZ" }},
		{"registrySku", func(c *Config) { c.RegistrySku = "Gold" }},
		{"maxReplicas", func(c *Config) { c.Consumer.MinReplicas, c.Consumer.MaxReplicas = 5, 2 }},
		{"vnetAddressSpace", func(c *Config) { c.VnetAddressSpace = "10.0.0.0/33" }},
		{"aksSubnetPrefix", func(c *Config) { c.AksSubnetPrefix = "192.168.0.0/24" }},
		{"podCidr", func(c *Config) { c.PodCidr = "10.225.0.0/16" }},
		{"serviceCidr", func(c *Config) { c.ServiceCidr = "10.244.0.0/16" }},
		{"dnsServiceIp", func(c *Config) { c.DNSServiceIP = "10.1.0.10" }},
		{"systemNodeVmSize", func(c *Config) { c.SystemNodeVMSize = "" }},
		{"systemNodeCount", func(c *Config) { c.SystemNodeCount = 0 }},
		{"systemNodeZones", func(c *Config) { c.SystemNodeZones = []string{"4"} }},
		{"kubernetesVersion", func(c *Config) { c.KubernetesVersion, c.UpgradeChannel = "1.33", "stable" }},
		{"kubernetesVersion", func(c *Config) { c.KubernetesVersion, c.UpgradeChannel = "1.33", "rapid" }},
		{"kubernetesVersion", func(c *Config) { c.KubernetesVersion, c.UpgradeChannel = "1.33.2", "patch" }},
		{"kubernetesVersion", func(c *Config) { c.KubernetesVersion = "latest" }}, // last: the all-at-once case keeps it
		{"upgradeChannel", func(c *Config) { c.UpgradeChannel = "weekly" }},
		{"queueName", func(c *Config) { c.QueueName = "Bad_Queue" }},
		{"tableName", func(c *Config) { c.TableName = "1table" }},
		{"operatorIpRanges", func(c *Config) { c.OperatorIPRanges = []string{"0.0.0.0/0"} }},
		{"operatorIpRanges", func(c *Config) { c.OperatorIPRanges = []string{"10.0.0.0/8"} }},
		{"operatorIpRanges", func(c *Config) { c.OperatorIPRanges = []string{"203.0.113.7/32"} }},
		{"operatorIpRanges", func(c *Config) { c.OperatorIPRanges = []string{"203.0.113.0/24"} }},
		{"operatorIpRanges", func(c *Config) { c.OperatorIPRanges = []string{"198.51.100.9"} }},
		{"operatorIpRanges", func(c *Config) { c.OperatorIPRanges = []string{"192.0.2.0/24"} }},
		{"apiServerAuthorizedIpRanges", func(c *Config) { c.APIServerAuthorizedIPRanges = []string{"203.0.113.0/24"} }},
		{"apiServerAuthorizedIpRanges", func(c *Config) { c.APIServerAuthorizedIPRanges = []string{"not-an-ip"} }},
		{"logRetentionDays", func(c *Config) { c.LogRetentionDays = 7 }},
		{"clusterTier", func(c *Config) { c.ClusterTier = "Gold" }},
		{"imageSourceRepository", func(c *Config) { c.ImageSourceRepository = "git@github.com:org/repo.git" }},
		{"imageSourceRepository", func(c *Config) { c.ImageSourceRepository = "" }},
		{"imageSourceRef", func(c *Config) { c.ImageSourceRef = "abc1234" }},
		{"imageSourceFolder", func(c *Config) { c.ImageSourceFolder = "../outside" }},
		{"imageDockerfile", func(c *Config) { c.ImageDockerfile = "/Dockerfile" }},
		{"imageBuildTimeoutSeconds", func(c *Config) { c.ImageBuildTimeoutSeconds = 10 }},
		{"image", func(c *Config) { c.Consumer.Image = "https://registry.example/app:1" }},
		{"alertEmails", func(c *Config) { c.AlertEmails = []string{"ops@example.com"} }},                           // without managedPrometheus
		{"alertEmails", func(c *Config) { c.ManagedPrometheus, c.AlertEmails = true, []string{"not-an-address"} }}, // after the row above: the all-at-once case keeps a bad address
		{"backlogAlertFor", func(c *Config) { c.BacklogAlertFor = "30s" }},
		{"backlogAlertFor", func(c *Config) { c.BacklogAlertFor = "soon" }},
		{"maintenanceWindow", func(c *Config) {
			c.MaintenanceWindow = components.MaintenanceWindow{DayOfWeek: "Sun", StartTime: "02:00", DurationHours: 4}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.Regexp(t, `aks-edw:`+tc.key+`[: ]`, err.Error())
		})
	}

	// Independent problems are all reported in one error. (The subnet, pod, service and DNS
	// checks are relative to a valid VNet/service range, and any image turns the build and its
	// imageSource* checks off, so they are left out here.)
	dependent := map[string]bool{"aksSubnetPrefix": true, "podCidr": true, "serviceCidr": true, "dnsServiceIp": true, "image": true}
	all := validConfig()
	for _, tc := range cases {
		if !dependent[tc.key] {
			tc.mutate(&all)
		}
	}
	err := all.Validate()
	require.Error(t, err)
	for _, tc := range cases {
		if !dependent[tc.key] {
			assert.Regexp(t, `aks-edw:`+tc.key+`[: ]`, err.Error(), "all problems are reported at once")
		}
	}
}

// With a prebuilt image nothing is built, so the build's keys are not checked; without one
// they are, and a branch ref is allowed (the program warns) while an abbreviated commit is not.
func TestImageBuildKeysOnlyMatterWhenBuilding(t *testing.T) {
	c := validConfig()
	c.ImageSourceRef, c.ImageBuildTimeoutSeconds = "abc1234", 0
	require.Error(t, c.Validate())
	assert.True(t, c.BuildsImage())
	c.Consumer.Image = "ghcr.io/org/consumer:1.0"
	assert.False(t, c.BuildsImage())
	assert.NoError(t, c.Validate())

	c = validConfig()
	c.ImageSourceRef = "release/1.0"
	assert.NoError(t, c.Validate())
	assert.False(t, c.ImageSource().IsCommit())
	c.ImageSourceRef = "0123456789abcdef0123456789abcdef01234567"
	assert.True(t, c.ImageSource().IsCommit())
}

func TestLoadFieldsParsesLikeTheCLI(t *testing.T) {
	c := DefaultConfig()
	vals := map[string]string{
		"systemNodeCount": "5", "protect": "true", "systemNodeZones": `["1","3"]`,
		"tags": `{"team":"edw"}`, "minReplicas": "1",
		"maintenanceWindow": `{"dayOfWeek":"Sunday","startTime":"02:00","durationHours":4}`,
	}
	get := func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
	failed := map[string]bool{}
	require.Empty(t, loadFields(&c, get, failed))
	require.Empty(t, loadFields(&c.Consumer, get, failed))
	require.Empty(t, failed)
	assert.Equal(t, 5, c.SystemNodeCount)
	assert.True(t, c.Protect)
	assert.Equal(t, []string{"1", "3"}, c.SystemNodeZones)
	assert.Equal(t, map[string]string{"team": "edw"}, c.Tags)
	assert.Equal(t, 1, c.Consumer.MinReplicas)
	assert.Equal(t, components.MaintenanceWindow{DayOfWeek: "Sunday", StartTime: "02:00", DurationHours: 4}, c.MaintenanceWindow)
	assert.Equal(t, map[string]string{"team": "edw", "owner": "aksdemo", "environment": "prod"}, c.EffectiveTags("prod"))

	bad := map[string]string{"systemNodeCount": "three", "protect": "yes please", "systemNodeZones": "1,2",
		"maintenanceWindow": `{"day":"Sunday"}`}
	errs := loadFields(&c, func(k string) (string, bool) { v, ok := bad[k]; return v, ok }, failed)
	require.Len(t, errs, 4)
	assert.Equal(t, map[string]bool{"systemNodeCount": true, "protect": true, "systemNodeZones": true, "maintenanceWindow": true}, failed)
	joined := joinConfigErrors(errs).Error()
	for k := range bad {
		assert.True(t, strings.Contains(joined, "aks-edw:"+k+":"), "error names %s: %s", k, joined)
	}
	assert.Contains(t, joined, `unknown field "day"`, "a misspelt key inside the window is refused")
	assert.Contains(t, joined, "dayOfWeek, startTime, durationHours, utcOffset, intervalWeeks", "the error lists the window's keys")
}

// Keys in the project's namespace that the program does not know are reported with the key the
// user most likely meant; other namespaces are left alone.
func TestUndeclaredKeysSuggestTheRealOne(t *testing.T) {
	errs := UndeclaredKeys([]string{"aks-edw:storageAccountSku", "aks-edw:storageSku", "azure-native:location",
		"aks-edw:maxReplica", "aks-edw:zzzzzzzz"})
	require.Len(t, errs, 3)
	assert.EqualError(t, errs[0], `aks-edw:storageAccountSku: is not a config key of this project (Pulumi.yaml declares every key); did you mean "storageSku"?`)
	assert.Contains(t, errs[1].Error(), `aks-edw:maxReplica: `)
	assert.Contains(t, errs[1].Error(), `did you mean "maxReplicas"?`)
	assert.NotContains(t, errs[2].Error(), "did you mean", "no suggestion when nothing is close")
}

// The version pin rule, per channel.
func TestVersionPinAndChannel(t *testing.T) {
	for _, tc := range []struct {
		version, channel string
		ok               bool
	}{
		{"", "stable", true}, {"", "rapid", true}, {"1.33", "patch", true}, {"1.33.2", "none", true},
		{"1.33.2", "node-image", true}, {"1.33", "stable", false}, {"1.33.2", "rapid", false}, {"1.33.2", "patch", false},
	} {
		c := validConfig()
		c.KubernetesVersion, c.UpgradeChannel = tc.version, tc.channel
		err := c.Validate()
		if tc.ok {
			assert.NoError(t, err, "%s + %s", tc.version, tc.channel)
		} else if assert.Error(t, err, "%s + %s", tc.version, tc.channel) {
			assert.Contains(t, err.Error(), "aks-edw:kubernetesVersion")
			assert.Contains(t, err.Error(), "downgrade")
		}
	}
}
