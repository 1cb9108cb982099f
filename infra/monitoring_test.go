package infra

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/app/observability"
	"github.com/aks-edw/aks-edw/components"
)

// The monitoring keys: every problem is its own error naming the key and the bad value.
func TestMonitoringConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string // each must appear; none: the config is valid
	}{
		{"defaults: off, no e-mails, 15m", func(c *Config) {}, nil},
		{"on with e-mails", func(c *Config) {
			c.ManagedPrometheus, c.AlertEmails = true, []string{"oncall@example.com", "Lead.Name+edw@sub.example.org"}
		}, nil},
		{"on without e-mails", func(c *Config) { c.ManagedPrometheus = true }, nil},
		{"e-mails without managedPrometheus", func(c *Config) { c.AlertEmails = []string{"oncall@example.com"} },
			[]string{"(1 problem(s))", "aks-edw:alertEmails: is set (1 address(es)) while aks-edw:managedPrometheus is false"}},
		{"one error per bad e-mail", func(c *Config) {
			c.ManagedPrometheus = true
			c.AlertEmails = []string{"oncall@example.com", "oncall", "ops@localhost", "Ops <ops@example.com>", ""}
		}, []string{"(4 problem(s))", `aks-edw:alertEmails: "oncall" is not an e-mail address`,
			`aks-edw:alertEmails: "ops@localhost" is not an e-mail address`,
			`aks-edw:alertEmails: "Ops <ops@example.com>" is not an e-mail address`,
			`aks-edw:alertEmails: "" is not an e-mail address`}},
		{"duplicate e-mail", func(c *Config) {
			c.ManagedPrometheus, c.AlertEmails = true, []string{"oncall@example.com", "OnCall@example.com"}
		}, []string{"(1 problem(s))", `aks-edw:alertEmails: "OnCall@example.com" is listed twice`}},
		{"backlogAlertFor 1m", func(c *Config) { c.BacklogAlertFor = "1m" }, nil},
		{"backlogAlertFor 24h", func(c *Config) { c.BacklogAlertFor = "24h" }, nil},
		{"backlogAlertFor 1h30m", func(c *Config) { c.BacklogAlertFor = "1h30m" }, nil},
		{"backlogAlertFor below 1m", func(c *Config) { c.BacklogAlertFor = "59s" }, []string{"aks-edw:backlogAlertFor: 59s must be between 1m0s and 24h0m0s"}},
		{"backlogAlertFor above 24h", func(c *Config) { c.BacklogAlertFor = "24h1s" }, []string{"aks-edw:backlogAlertFor: 24h0m1s must be between"}},
		{"backlogAlertFor no unit", func(c *Config) { c.BacklogAlertFor = "15" }, []string{`aks-edw:backlogAlertFor: "15" is not a duration`}},
		{"backlogAlertFor empty", func(c *Config) { c.BacklogAlertFor = "" }, []string{`aks-edw:backlogAlertFor: "" is not a duration`}},
		{"backlogAlertFor fraction", func(c *Config) { c.BacklogAlertFor = "90.5s" }, []string{"aks-edw:backlogAlertFor: 1m30.5s must be a whole number of seconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// The alert parameters follow the scale mode: the ScaledObject's or the ScaledJob's name and
// sizing, the queue and backlogAlertFor.
func TestAlertParams(t *testing.T) {
	c := validConfig()
	c.BacklogAlertFor = "20m"
	c.QueueName = "orders"
	s := &c.Consumer
	s.Namespace, s.ScaledObjectName, s.ScaledJobName = "edw", "so", "sj"
	s.MaxReplicas, s.QueueLength, s.JobMaxReplicas, s.JobQueueLength = 7, 100, 3, 900
	for _, tc := range []struct {
		mode string
		want observability.Params
	}{
		{components.ScaleModeScaledObject, observability.Params{Namespace: "edw", Scaler: "so", Container: "consumer", QueueName: "orders", MaxReplicas: 7, QueueLength: 100, BacklogFor: 20 * time.Minute}},
		{components.ScaleModeScaledJob, observability.Params{Namespace: "edw", Scaler: "sj", Container: "consumer", QueueName: "orders", MaxReplicas: 3, QueueLength: 900, BacklogFor: 20 * time.Minute}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s.ScaleMode = tc.mode
			assert.Equal(t, tc.want, c.AlertParams())
			require.NoError(t, c.AlertParams().Validate())
		})
	}
	c.BacklogAlertFor = "never"
	assert.Zero(t, c.BacklogAlertDuration(), "an unparsable duration is 0 (Validate reports it)")
}

func TestActionGroupShortName(t *testing.T) {
	assert.Equal(t, "aksdemo", ActionGroupShortName("aksdemo"))
	assert.Equal(t, strings.Repeat("a", 12), ActionGroupShortName(strings.Repeat("a", 14)), "Azure allows 12 characters")
}
